"""MaskedLMHead (tied weights, loss vs logits, mixed precision) and ClassificationHead."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from modeling_helpers import BACKEND, HIDDEN, P, VOCAB, pretraining_inputs, tiny_encoder
from research.modeling import ClassificationHead, MaskedLMHead


def _head_inputs(encoder):
    inputs = pretraining_inputs()
    sequence_output = encoder(inputs)["sequence_output"]
    return sequence_output, inputs["masked_lm_positions"], inputs["masked_lm_ids"], inputs["masked_lm_weights"]


def test_loss_matches_explicit_logits():
    encoder = tiny_encoder()
    head = MaskedLMHead(encoder.get_embedding_table(), backend=BACKEND)
    head.output_bias.assign(tf.random.normal([VOCAB]))  # a non-zero bias must enter both paths
    sequence_output, positions, ids, weights = _head_inputs(encoder)
    fused = head(sequence_output, positions, ids, weights, output="loss")
    logits = head(sequence_output, positions, output="logits")
    assert fused["per_position_loss"].shape == (2, P) and fused["per_position_loss"].dtype == tf.float32
    assert fused["predicted_ids"].shape == (2, P) and fused["predicted_ids"].dtype == tf.int32
    assert logits.shape == (2, P, VOCAB) and logits.dtype == tf.float32
    expected = weights * tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)
    # The reference head (BACKEND) computes the same float32 logits and cross-entropy: equal, not close.
    np.testing.assert_array_equal(fused["per_position_loss"].numpy(), expected.numpy())
    expected_ids = np.where(weights > 0, np.argmax(logits.numpy(), axis=-1), -1)  # -1: nothing predicted
    np.testing.assert_array_equal(fused["predicted_ids"].numpy(), expected_ids)
    assert fused["per_position_loss"].numpy()[1, 2] == 0.0  # zero weight, zero loss
    evaluation = head(sequence_output, positions, ids, weights, training=False)
    np.testing.assert_allclose(evaluation["per_position_loss"].numpy(), fused["per_position_loss"].numpy(), rtol=1e-6)
    log_probs = head(sequence_output, positions, output="predictions")
    np.testing.assert_allclose(log_probs.numpy(), tf.nn.log_softmax(logits).numpy(), rtol=1e-5, atol=1e-5)
    # Without weights every position counts.
    unweighted = head(sequence_output, positions, ids, output="loss")["per_position_loss"]
    np.testing.assert_allclose(unweighted.numpy()[0], fused["per_position_loss"].numpy()[0], rtol=1e-6)
    assert unweighted.numpy()[1, 2] > 0


def test_output_weights_are_tied_to_the_embedding_table():
    encoder = tiny_encoder()
    table = encoder.get_embedding_table()
    head = MaskedLMHead(table, backend=BACKEND)
    assert head.embedding_table is table
    assert sum(w is table for w in head.trainable_weights) == 1
    sequence_output, positions, ids, weights = _head_inputs(encoder)
    sequence_output = tf.stop_gradient(sequence_output)  # only the head's use of the table remains
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(head(sequence_output, positions, ids, weights)["per_position_loss"])
    grad_table, grad_bias = tape.gradient(loss, [table, head.output_bias])
    grad_table = tf.convert_to_tensor(grad_table).numpy()
    assert np.abs(grad_table).sum() > 0
    assert np.abs(grad_bias.numpy()).sum() > 0
    # Changing the table changes the logits.
    before = head(sequence_output, positions, output="logits").numpy()
    table.assign_add(tf.ones_like(table))
    assert not np.allclose(head(sequence_output, positions, output="logits").numpy(), before)


def test_mixed_bfloat16_head_reads_float32_weights():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    encoder = tiny_encoder()
    head = MaskedLMHead(encoder.get_embedding_table(), backend=BACKEND)
    head.output_bias.assign(tf.fill([VOCAB], 1e-3))  # not representable in bfloat16
    sequence_output, positions, ids, weights = _head_inputs(encoder)
    weights = weights * np.float32(0.3)  # neither: the weights must not be rounded to bfloat16 either
    sequence_output = tf.cast(sequence_output, tf.bfloat16)  # the head reads the compute dtype too
    fused = head(sequence_output, positions, ids, weights)
    logits = head(sequence_output, positions, output="logits")
    assert fused["per_position_loss"].dtype == tf.float32 and logits.dtype == tf.float32
    expected = weights * tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)
    # The reference head (BACKEND) computes the same float32 logits and cross-entropy: equal, not close.
    np.testing.assert_array_equal(fused["per_position_loss"].numpy(), expected.numpy())
    # The float32 bias reaches the logits unrounded: logits(bias) - logits(0) == 1e-3 exactly-ish.
    head.output_bias.assign(tf.zeros([VOCAB]))
    shift = logits.numpy() - head(sequence_output, positions, output="logits").numpy()
    np.testing.assert_allclose(shift, 1e-3, rtol=1e-4)


def test_head_arguments():
    encoder = tiny_encoder()
    table = encoder.get_embedding_table()
    assert MaskedLMHead(table, backend="reference").supports_jit
    assert not MaskedLMHead(table, backend="auto").supports_jit
    with pytest.raises(ValueError, match="backend"):
        MaskedLMHead(table, backend="fast")
    head = MaskedLMHead(table, backend=BACKEND)
    sequence_output, positions, ids, weights = _head_inputs(encoder)
    with pytest.raises(ValueError, match="masked_lm_ids"):
        head(sequence_output, positions)
    with pytest.raises(ValueError, match="output"):
        head(sequence_output, positions, ids, output="probabilities")
    config = head.get_config()
    assert config["backend"] == BACKEND and "embedding_table" not in config
    clone = MaskedLMHead.from_config({**config, "embedding_table": table})
    assert clone.get_config() == config


def test_classification_head():
    sequence = tf.random.normal([2, 5, HIDDEN])
    head = ClassificationHead(num_classes=3, dropout_rate=0.5, name="next_sentence")
    logits = head(sequence)
    assert logits.shape == (2, 3) and logits.dtype == tf.float32
    assert head.dense.kernel.shape == (HIDDEN, HIDDEN)
    # Only the [CLS] token matters.
    changed = tf.concat([sequence[:, :1], tf.random.normal([2, 4, HIDDEN])], axis=1)
    np.testing.assert_allclose(head(changed).numpy(), logits.numpy(), rtol=1e-6)
    pooled_head = ClassificationHead(inner_dim=0, num_classes=1)
    assert pooled_head(sequence[:, 0]).shape == (2, 1)
    assert pooled_head.dense is None
    clone = ClassificationHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationHead(inner_dim=4)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_auto_backend_agrees_with_reference(policy, native_library):
    """'auto' (the C++ kernels, which must be built: `native_library`) gives the reference's losses and
    gradients."""
    keras.mixed_precision.set_global_policy(policy)
    encoder = tiny_encoder()
    table = encoder.get_embedding_table()
    sequence_output, positions, ids, weights = _head_inputs(encoder)
    results = []
    for backend in ("auto", "reference"):
        head = MaskedLMHead(table, backend=backend)
        if results:
            head.set_weights(weights_of_first)
        weights_of_first = head.get_weights()
        with tf.GradientTape() as tape:
            tape.watch(sequence_output)
            loss = head(sequence_output, positions, ids, weights)
            total = tf.reduce_sum(loss["per_position_loss"])
        grads = tape.gradient(total, [sequence_output, table])
        results.append((loss, [tf.cast(tf.convert_to_tensor(g), tf.float32).numpy() for g in grads]))
    (auto, auto_grads), (reference, reference_grads) = results
    np.testing.assert_allclose(auto["per_position_loss"].numpy(), reference["per_position_loss"].numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(auto["predicted_ids"].numpy(), reference["predicted_ids"].numpy())
    for a, r in zip(auto_grads, reference_grads):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)
