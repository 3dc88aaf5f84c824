"""BertPretrainer and BertClassifier: outputs, heads, config, checkpoints, .keras, a little training."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from modeling_helpers import BACKEND, HIDDEN, P, SEQ_LEN, encoder_inputs, pretraining_inputs, tiny_encoder
from research.modeling import BertClassifier, BertPretrainer, ClassificationHead, MaskedLMHead


def _pretrainer(backend=BACKEND, **encoder_overrides):
    encoder = tiny_encoder(**encoder_overrides)
    head = MaskedLMHead(encoder.get_embedding_table(), backend=backend, name="masked_lm")
    return BertPretrainer(encoder, mlm_head=head,
                          classification_heads=[ClassificationHead(num_classes=2, name="next_sentence")])


def _assert_same(a, b):
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=1e-6, atol=1e-6, err_msg=key)


def test_pretrainer_outputs_and_checkpoint_items():
    model = _pretrainer()
    outputs = model(pretraining_inputs())
    assert set(outputs) == {"mlm_per_position_loss", "mlm_predicted_ids", "sequence_output", "pooled_output",
                            "next_sentence"}
    assert outputs["mlm_per_position_loss"].shape == (2, P) and outputs["mlm_per_position_loss"].dtype == tf.float32
    assert outputs["mlm_predicted_ids"].shape == (2, P) and outputs["mlm_predicted_ids"].dtype == tf.int32
    assert outputs["sequence_output"].shape == (2, SEQ_LEN, HIDDEN)
    assert outputs["pooled_output"].shape == (2, HIDDEN)
    assert outputs["next_sentence"].shape == (2, 2) and outputs["next_sentence"].dtype == tf.float32
    items = model.checkpoint_items
    assert set(items) == {"encoder", "masked_lm", "next_sentence", "next_sentence.pooler_dense"}
    assert items["encoder"] is model.encoder and items["masked_lm"] is model.masked_lm
    # The tied table is one variable of the model.
    table = model.encoder.get_embedding_table()
    assert sum(w is table for w in model.trainable_weights) == 1


def test_pretrainer_default_head_is_tied_and_heads_must_be_unique():
    encoder = tiny_encoder(activation="relu")
    model = BertPretrainer(encoder)
    assert model.masked_lm.embedding_table is encoder.get_embedding_table()
    assert model.masked_lm.activation is keras.activations.relu
    with pytest.raises(ValueError, match="unique"):
        BertPretrainer(encoder, classification_heads=[ClassificationHead(num_classes=2, name="a"),
                                                      ClassificationHead(num_classes=3, name="a")])


def test_pretrainer_mixed_bfloat16_gradients():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = _pretrainer()
    with tf.GradientTape() as tape:
        outputs = model(pretraining_inputs(), training=True)
        loss = tf.reduce_sum(outputs["mlm_per_position_loss"]) + tf.reduce_sum(outputs["next_sentence"])
    assert loss.dtype == tf.float32
    variables = [v for v in model.trainable_variables if "/pooler/" not in v.path]  # pooler: unused here
    grads = tape.gradient(loss, variables)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_pretrainer_masked_positions_only_keeps_loss_and_gradients(backend, request):
    if backend == "auto":
        request.getfixturevalue("native_library")  # else 'auto' would be the reference twin again
    encoder = tiny_encoder()
    head = MaskedLMHead(encoder.get_embedding_table(), backend=backend, name="masked_lm")
    everywhere = BertPretrainer(encoder, mlm_head=head)
    masked_only = BertPretrainer(encoder, mlm_head=head, masked_positions_only=True)
    inputs = {k: tf.constant(v) for k, v in pretraining_inputs().items()}
    variables = [v for v in everywhere.trainable_variables if "/pooler/" not in v.path]  # pooler: unused

    def loss_and_grads(model):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = tf.reduce_sum(outputs["mlm_per_position_loss"])
        return outputs, loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    full, full_loss, full_grads = loss_and_grads(everywhere)
    part, part_loss, part_grads = loss_and_grads(masked_only)
    np.testing.assert_allclose(float(part_loss), float(full_loss), rtol=1e-6)
    np.testing.assert_array_equal(part["mlm_predicted_ids"].numpy(), full["mlm_predicted_ids"].numpy())
    for variable, a, b in zip(variables, full_grads, part_grads):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6, rtol=1e-5, err_msg=variable.path)
    assert part["sequence_output"].shape == (2, P, HIDDEN)
    positions = inputs["masked_lm_positions"]
    np.testing.assert_allclose(part["sequence_output"].numpy(),
                               tf.gather(full["sequence_output"], positions, batch_dims=1).numpy(), atol=1e-6)
    assert BertPretrainer.from_config(masked_only.get_config()).masked_positions_only
    with pytest.raises(ValueError, match="masked_positions_only must be True or False, got 'yes'"):
        BertPretrainer(encoder, masked_positions_only="yes")
    with pytest.raises(ValueError, match="masked_positions_only.*next_sentence"):
        BertPretrainer(encoder, classification_heads=[ClassificationHead(num_classes=2, name="next_sentence")],
                       masked_positions_only=True)


def test_pretrainer_config_checkpoint_and_keras_file(tmp_path):
    model = _pretrainer()
    inputs = pretraining_inputs()
    expected = model(inputs)

    clone = BertPretrainer.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.masked_lm.embedding_table is clone.encoder.get_embedding_table()
    clone(inputs)  # builds the classification head
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=clone).read(path).assert_consumed()
    _assert_same(expected, clone(inputs))

    # The pieces on their own, as a Trainer or an export would write them.
    pieces = BertPretrainer.from_config(model.get_config())
    pieces(inputs)
    path = tf.train.Checkpoint(**model.checkpoint_items).write(str(tmp_path / "items"))
    tf.train.Checkpoint(**pieces.checkpoint_items).read(path).assert_consumed()
    _assert_same(expected, pieces(inputs))

    model.save(tmp_path / "pretrainer.keras")
    loaded = keras.models.load_model(tmp_path / "pretrainer.keras")
    assert loaded.masked_lm.embedding_table is loaded.encoder.get_embedding_table()
    _assert_same(expected, loaded(inputs))


def test_training_lowers_the_loss(native_library):
    # 'auto': the C++ gather and fused loss (and their gradients), the library being built.
    model = _pretrainer(backend="auto", hidden_dropout_rate=0.1, attention_dropout_rate=0.1)
    inputs = {k: tf.constant(v) for k, v in pretraining_inputs().items()}
    labels = tf.constant([0, 1])
    variables = model.trainable_variables

    def total_loss(outputs):
        mlm = tf.reduce_sum(outputs["mlm_per_position_loss"]) / tf.reduce_sum(inputs["masked_lm_weights"])
        nsp = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, outputs["next_sentence"]))
        return mlm + nsp

    # Plain SGD: tracing a Keras optimizer's apply_gradients alone takes seconds on this machine.
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = total_loss(model(inputs, training=True))
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            if grad is not None:  # the encoder's pooler feeds no pretraining output
                variable.assign_sub(0.3 * tf.convert_to_tensor(grad))
        return loss

    before = float(total_loss(model(inputs)))
    for _ in range(30):
        step()
    after = float(total_loss(model(inputs)))
    assert after < 0.5 * before, (before, after)


def test_classifier_classes_and_regression():
    encoder = tiny_encoder()
    inputs = encoder_inputs()
    classifier = BertClassifier(encoder, num_classes=3)
    logits = classifier(inputs)
    assert logits.shape == (2, 3) and logits.dtype == tf.float32
    assert classifier.classifier.name == "sentence_prediction" and classifier.classifier.dense is None
    assert set(classifier.checkpoint_items) == {"encoder", "sentence_prediction"}
    assert classifier.checkpoint_items["encoder"] is encoder
    # With the encoder's pooler the head sees pooled_output only: its kernel is [hidden, classes].
    assert classifier.classifier.out_proj.kernel.shape == (HIDDEN, 3)
    pooled = encoder(inputs)["pooled_output"]
    np.testing.assert_allclose(logits.numpy(), classifier.classifier(pooled).numpy(), rtol=1e-5, atol=1e-6)
    # Dropout acts only in training.
    assert not np.allclose(classifier(inputs, training=True).numpy(), logits.numpy())
    regression = BertClassifier(tiny_encoder(), num_classes=1, head_name="score")
    assert regression(inputs).shape == (2, 1)
    assert set(regression.checkpoint_items) == {"encoder", "score"}


def test_classifier_runs_the_last_layer_at_cls_only_with_the_same_logits_and_gradients(monkeypatch):
    encoder = tiny_encoder()
    classifier = BertClassifier(encoder, num_classes=3, dropout_rate=0.0)
    inputs = {k: tf.constant(v) for k, v in encoder_inputs().items()}
    variables = classifier.trainable_variables

    def full_encoder_logits():  # the same head on the pooled output of a full encoder pass
        return classifier.classifier(encoder(inputs)["pooled_output"])

    def logits_and_grads(forward):
        with tf.GradientTape() as tape:
            logits = forward()
            loss = tf.reduce_sum(logits * tf.constant([[1.0, -2.0, 0.5]]))
        return logits, [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    full, full_grads = logits_and_grads(full_encoder_logits)
    cls_only, cls_only_grads = logits_and_grads(lambda: classifier(inputs, training=True))
    np.testing.assert_allclose(cls_only.numpy(), full.numpy(), atol=1e-6, rtol=1e-6)
    for variable, a, b in zip(variables, full_grads, cls_only_grads):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6, rtol=1e-5, err_msg=variable.path)
    # The last layer's FFN saw one row per example: [CLS].
    intermediate = encoder.transformer_layers[-1].intermediate
    ffn_rows, ffn_call = [], intermediate.call

    def counting_call(x, *args, **kwargs):
        ffn_rows.append(x.shape[1])
        return ffn_call(x, *args, **kwargs)

    monkeypatch.setattr(intermediate, "call", counting_call)
    classifier(inputs)
    assert ffn_rows == [1]


def test_classifier_without_encoder_pooler():
    encoder = tiny_encoder()
    inputs = encoder_inputs()
    classifier = BertClassifier(encoder, num_classes=2, use_encoder_pooler=False, dropout_rate=0.0)
    logits = classifier(inputs)
    assert logits.shape == (2, 2)
    head = classifier.classifier
    assert head.dense.kernel.shape == (HIDDEN, HIDDEN)  # dense + tanh on [CLS] of sequence_output
    cls = encoder(inputs)["sequence_output"][:, 0]
    np.testing.assert_allclose(logits.numpy(), head.out_proj(head.dense(cls)).numpy(), rtol=1e-5, atol=1e-6)
    # The encoder's pooler is not used: its weights get no gradient.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(classifier(inputs))
    grads = tape.gradient(loss, encoder.pooler.trainable_variables)
    assert all(g is None for g in grads)


def test_classifier_cls_head_overrides_head_arguments():
    encoder = tiny_encoder()
    custom = ClassificationHead(inner_dim=8, num_classes=4, name="custom")
    classifier = BertClassifier(encoder, num_classes=7, head_name="ignored", use_encoder_pooler=False, cls_head=custom)
    assert classifier.classifier is custom
    assert classifier(encoder_inputs()).shape == (2, 4)
    assert set(classifier.checkpoint_items) == {"encoder", "custom", "custom.pooler_dense"}


def test_classifier_config_checkpoint_and_keras_file(tmp_path):
    encoder = tiny_encoder()
    inputs = encoder_inputs()
    for kwargs in (dict(num_classes=3), dict(num_classes=1, use_encoder_pooler=False, dropout_rate=0.2),
                   dict(num_classes=5, use_encoder_pooler=False,
                        cls_head=ClassificationHead(inner_dim=8, num_classes=2, name="custom"))):
        classifier = BertClassifier(encoder, **kwargs)
        expected = classifier(inputs).numpy()
        config = classifier.get_config()
        clone = BertClassifier.from_config(config)
        assert clone.get_config() == config
        clone(inputs)
        path = tf.train.Checkpoint(**classifier.checkpoint_items).write(str(tmp_path / "ckpt"))
        tf.train.Checkpoint(**clone.checkpoint_items).read(path).assert_consumed()
        np.testing.assert_allclose(clone(inputs).numpy(), expected, rtol=1e-6, atol=1e-6)
    classifier.save(tmp_path / "classifier.keras")
    loaded = keras.models.load_model(tmp_path / "classifier.keras")
    assert isinstance(loaded, BertClassifier) and loaded.classifier.name == "custom"
    np.testing.assert_allclose(loaded(inputs).numpy(), expected, rtol=1e-6, atol=1e-6)
