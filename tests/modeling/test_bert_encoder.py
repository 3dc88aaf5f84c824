"""BertEncoder: shapes, masking, the embedding table, mixed precision, config, checkpoints, .keras."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.modeling import BertEncoder, layers
from modeling_helpers import HIDDEN, SEQ_LEN, VOCAB, encoder_inputs, tiny_encoder


def _assert_same_outputs(a, b, inputs, atol=0.0):
    out_a, out_b = a(inputs), b(inputs)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(out_a[key].numpy(), out_b[key].numpy(), atol=atol, rtol=0)


def test_shapes_and_dtypes():
    encoder = tiny_encoder()
    outputs = encoder(encoder_inputs())
    assert outputs["sequence_output"].shape == (2, SEQ_LEN, HIDDEN)
    assert outputs["pooled_output"].shape == (2, HIDDEN)
    assert len(outputs["encoder_outputs"]) == 2
    assert all(o.shape == (2, SEQ_LEN, HIDDEN) for o in outputs["encoder_outputs"])
    assert outputs["sequence_output"].dtype == tf.float32
    np.testing.assert_array_equal(outputs["encoder_outputs"][-1].numpy(), outputs["sequence_output"].numpy())
    assert np.all(np.abs(outputs["pooled_output"].numpy()) <= 1.0)  # tanh
    # List inputs in the order word ids, mask, type ids give the same result.
    inputs = encoder_inputs()
    as_list = [inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"]]
    np.testing.assert_allclose(encoder(as_list)["sequence_output"].numpy(), outputs["sequence_output"].numpy())


@pytest.mark.parametrize("num_layers", [2, 0])
def test_output_positions_match_the_full_outputs_gathered(num_layers):
    encoder = tiny_encoder(num_layers=num_layers)
    inputs = encoder_inputs(lengths=(8, 5))
    positions = np.array([[1, 7, 3], [4, 0, 0]], np.int32)  # row 1: padded with position 0, as records are
    full = encoder(inputs)
    part = encoder(inputs, output_positions=positions)
    expected = tf.gather(full["sequence_output"], positions, batch_dims=1).numpy()
    assert part["sequence_output"].shape == (2, 3, HIDDEN)
    np.testing.assert_allclose(part["sequence_output"].numpy(), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(part["pooled_output"].numpy(), full["pooled_output"].numpy(), atol=1e-6, rtol=0)
    assert len(part["encoder_outputs"]) == num_layers
    for i in range(num_layers - 1):  # the layers before the last run everywhere, as without positions
        np.testing.assert_allclose(part["encoder_outputs"][i].numpy(), full["encoder_outputs"][i].numpy(),
                                   atol=1e-6, rtol=0)
    if num_layers:
        np.testing.assert_array_equal(part["encoder_outputs"][-1].numpy(), part["sequence_output"].numpy())
    # No positions at all: only the [CLS] row runs through the last layer, for the pooler.
    none = encoder(inputs, output_positions=np.zeros((2, 0), np.int32))
    assert none["sequence_output"].shape == (2, 0, HIDDEN)
    np.testing.assert_allclose(none["pooled_output"].numpy(), full["pooled_output"].numpy(), atol=1e-6, rtol=0)


def test_padding_is_masked():
    encoder = tiny_encoder()
    inputs = encoder_inputs(lengths=(8, 5))
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["input_word_ids"][1, 5:] = [11, 12, 13]
    changed["input_type_ids"][1, 5:] = 1
    before, after = encoder(inputs), encoder(changed)
    np.testing.assert_allclose(after["sequence_output"].numpy()[1, :5], before["sequence_output"].numpy()[1, :5],
                               atol=1e-6)
    np.testing.assert_allclose(after["pooled_output"].numpy(), before["pooled_output"].numpy(), atol=1e-6)
    # Unmasking those positions does change the real positions: the mask is what hides them.
    changed["input_mask"][1, :] = 1
    unmasked = encoder(changed)
    assert not np.allclose(unmasked["sequence_output"].numpy()[1, :5], before["sequence_output"].numpy()[1, :5],
                           atol=1e-4)


def test_embedding_table_is_the_word_embedding_variable():
    encoder = tiny_encoder()
    table = encoder.get_embedding_table()
    assert isinstance(table, keras.Variable)
    assert tuple(table.shape) == (VOCAB, HIDDEN)
    assert any(table is w for w in encoder.trainable_weights)
    # Zeroing one word's row changes what that word embeds to.
    inputs = encoder_inputs()
    before = encoder(inputs)["sequence_output"].numpy()
    word = int(inputs["input_word_ids"][0, 2])
    table.assign(tf.tensor_scatter_nd_update(table, [[word]], tf.zeros([1, HIDDEN])))
    assert not np.allclose(encoder(inputs)["sequence_output"].numpy()[0, 2], before[0, 2])


def test_too_long_sequence_raises():
    encoder = tiny_encoder(max_sequence_length=6)
    with pytest.raises(ValueError, match=r"seq_len 8 exceeds max_sequence_length 6"):
        encoder(encoder_inputs())
    # In a graph with an unknown seq_len, the same check runs at execution time.
    spec = tf.TensorSpec([None, None], tf.int32)
    run = tf.function(lambda w, m, t: encoder([w, m, t])["pooled_output"], input_signature=[spec] * 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_sequence_length 6"):
        run(*[tf.constant(v) for v in encoder_inputs().values()])


def test_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    encoder = tiny_encoder()
    assert all(v.dtype == "float32" for v in encoder.weights)
    inputs = encoder_inputs()
    with tf.GradientTape() as tape:
        outputs = encoder(inputs)
        assert outputs["sequence_output"].dtype == tf.float32  # Model Garden's: layer outputs in float32
        assert all(output.dtype == tf.float32 for output in outputs["encoder_outputs"])
        assert outputs["pooled_output"].dtype == tf.bfloat16
        loss = tf.reduce_mean(tf.square(tf.cast(outputs["sequence_output"], tf.float32)))
        loss += tf.reduce_mean(tf.cast(outputs["pooled_output"], tf.float32))
    grads = tape.gradient(loss, encoder.trainable_variables)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads)
    # Fully padded rows stay finite too (every key masked).
    inputs["input_mask"][1, :] = 0
    assert np.all(np.isfinite(tf.cast(encoder(inputs)["sequence_output"], tf.float32).numpy()))


def test_config_round_trip():
    encoder = tiny_encoder(activation="relu", initializer=keras.initializers.TruncatedNormal(stddev=0.05))
    config = encoder.get_config()
    assert config["initializer"]["config"]["stddev"] == 0.05
    clone = BertEncoder.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(encoder.get_weights())
    _assert_same_outputs(encoder, clone, encoder_inputs())


def test_gelu_tanh_and_layer_norm_epsilon_reach_every_layer_and_survive_serialization(tmp_path):
    encoder = tiny_encoder(activation="gelu_tanh", layer_norm_epsilon=1e-5)
    norms = [encoder.embeddings.layer_norm] + [norm for block in encoder.transformer_layers
                                              for norm in (block.attention_norm, block.output_norm)]
    assert [norm.epsilon for norm in norms] == [1e-5] * 5
    assert all(block.intermediate.activation is layers.gelu_tanh for block in encoder.transformer_layers)
    x = np.linspace(-4, 4, 17).astype(np.float32)
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(layers.gelu_tanh(x), tanh_form, atol=1e-6)
    encoder(encoder_inputs())
    encoder.save(tmp_path / "encoder.keras")
    loaded = keras.models.load_model(tmp_path / "encoder.keras")
    assert loaded.layer_norm_epsilon == 1e-5 and loaded.transformer_layers[0].intermediate.activation is layers.gelu_tanh
    _assert_same_outputs(encoder, loaded, encoder_inputs())


@pytest.mark.parametrize("epsilon", [0, -1e-6, "1e-12", True])
def test_bad_layer_norm_epsilon_is_named(epsilon):
    with pytest.raises(ValueError, match="layer_norm_epsilon must be a number > 0"):
        tiny_encoder(layer_norm_epsilon=epsilon)


def test_checkpoint_round_trip(tmp_path):
    encoder, other = tiny_encoder(), tiny_encoder()
    inputs = encoder_inputs()
    assert not np.allclose(encoder(inputs)["pooled_output"].numpy(), other(inputs)["pooled_output"].numpy())
    path = tf.train.Checkpoint(encoder=encoder).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(encoder.weights)  # every block is in the checkpoint, not only the embeddings
    tf.train.Checkpoint(encoder=other).read(path).assert_consumed()
    _assert_same_outputs(encoder, other, inputs)


def test_keras_save_and_load(tmp_path):
    encoder = tiny_encoder()
    inputs = encoder_inputs()
    encoder(inputs)
    encoder.save(tmp_path / "encoder.keras")
    loaded = keras.models.load_model(tmp_path / "encoder.keras")
    assert isinstance(loaded, BertEncoder)
    assert loaded.get_config() == encoder.get_config()
    _assert_same_outputs(encoder, loaded, inputs)


def test_self_attention_matches_a_numpy_computation():
    """Multi-head attention from the layer's own weights, in float64: softmax(q k^T / sqrt(d) + bias) v."""
    rng = np.random.RandomState(4)
    batch, seq_len, hidden, heads = 3, 7, 12, 3
    attention = layers.SelfAttention(hidden, heads, dropout_rate=0.0)
    x = rng.randn(batch, seq_len, hidden).astype(np.float32)
    mask = np.ones([batch, seq_len], np.int32)
    mask[1, 4:] = 0
    output = attention(tf.constant(x), tf.constant(mask)).numpy()
    qkv_kernel, qkv_bias = (w.numpy().astype(np.float64) for w in attention.qkv.weights)
    out_kernel, out_bias = (w.numpy().astype(np.float64) for w in attention.output_dense.weights)
    size = hidden // heads
    qkv = (x.astype(np.float64) @ qkv_kernel + qkv_bias).reshape(batch, seq_len, 3, heads, size)
    query, key, value = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    scores = query @ key.transpose(0, 1, 3, 2) / np.sqrt(size) + np.where(mask, 0.0, -1e9)[:, None, None, :]
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ value).transpose(0, 2, 1, 3).reshape(batch, seq_len, hidden)
    np.testing.assert_allclose(output, context @ out_kernel + out_bias, rtol=1e-4, atol=1e-5)


def test_attention_dropout_recomputed_in_backward_matches_plain_autodiff():
    """The attention core regenerates its dropped probabilities in the backward pass: its values and
    gradients equal those of matmul(dropout(probs), value) differentiated as written, mask for mask."""
    rng = np.random.RandomState(5)
    probs = tf.constant(rng.rand(2, 3, 6, 6).astype(np.float32))
    value = tf.constant(rng.randn(2, 3, 6, 4).astype(np.float32))
    upstream = tf.constant(rng.randn(2, 3, 6, 4).astype(np.float32))
    seed = tf.constant([7, 11], tf.int64)
    results = []
    for attend in (lambda p, v: layers._attend_with_dropout(p, v, 0.3, seed, "auto"),
                   lambda p, v: tf.matmul(ops.dropout(p, 0.3, seed), v)):
        with tf.GradientTape() as tape:
            tape.watch([probs, value])
            context = attend(probs, value)
            total = tf.reduce_sum(context * upstream)
        results.append([context] + tape.gradient(total, [probs, value]))
    for ours, plain in zip(*results):
        np.testing.assert_allclose(ours.numpy(), plain.numpy(), rtol=1e-6, atol=1e-6)
    assert np.mean(results[0][1].numpy() == 0) > 0.1  # the mask really drops entries of the gradient


@pytest.mark.parametrize("name", ["Dense", "Dropout", "LayerNormalization", "BertEmbeddings", "SelfAttention",
                                  "TransformerBlock"])
def test_layers_are_registered_for_keras_serialization(name):
    assert keras.saving.get_registered_object(f"research>{name}") is getattr(layers, name)


def _dense_values_and_gradients(layer, inputs, upstream, jit_compile=False):
    @tf.function(jit_compile=jit_compile)
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            total = tf.reduce_sum(tf.cast(layer(inputs), tf.float32) * upstream)
        return [layer(inputs)] + tape.gradient(total, [inputs, layer.kernel, layer.bias])

    return [t.numpy() for t in step(inputs)]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_dense_with_transposed_kernel_backward_matches_keras_dense(jit_compile):
    """Same values and gradients (input, kernel, bias) as keras.layers.Dense with the same weights; under
    XLA it takes Keras' own path."""
    rng = np.random.RandomState(3)
    inputs = tf.constant(rng.randn(2, 5, 6).astype(np.float32))
    upstream = tf.constant(rng.randn(2, 5, 24).astype(np.float32))
    ours = layers.Dense(24, activation="tanh", transposed_kernel_backward=True)
    keras_dense = keras.layers.Dense(24, activation="tanh")
    ours.build((None, None, 6))
    keras_dense.build((None, None, 6))
    keras_dense.set_weights(ours.get_weights())
    for a, b in zip(_dense_values_and_gradients(ours, inputs, upstream, jit_compile),
                    _dense_values_and_gradients(keras_dense, inputs, upstream)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_dense_with_gelu_uses_the_fused_op_and_matches_keras_dense(policy, transposed):
    """A research GELU activation with a bias: one BiasGelu op forward (no BiasAdd, no separate Gelu),
    and the values and all gradients of keras.layers.Dense with the same weights."""
    rng = np.random.RandomState(4)
    inputs = tf.constant(rng.randn(2, 5, 6).astype(np.float32))
    upstream = tf.constant(rng.randn(2, 5, 40).astype(np.float32))
    ours = layers.Dense(40, activation=ops.gelu, transposed_kernel_backward=transposed, dtype=policy)
    keras_dense = keras.layers.Dense(40, activation=ops.gelu, dtype=policy)
    ours.build((None, None, 6))
    keras_dense.build((None, None, 6))
    keras_dense.set_weights(ours.get_weights())
    keras_dense.bias.assign(rng.randn(40).astype(np.float32))
    ours.bias.assign(keras_dense.bias)
    tolerance = dict(rtol=1e-5, atol=1e-6) if policy == "float32" else dict(rtol=3e-2, atol=3e-2)
    for a, b in zip(_dense_values_and_gradients(ours, inputs, upstream),
                    _dense_values_and_gradients(keras_dense, inputs, upstream)):
        np.testing.assert_allclose(np.float32(a), np.float32(b), **tolerance)
    graph = tf.function(ours).get_concrete_function(tf.TensorSpec([None, None, 6])).graph
    op_types = [op.type for op in graph.get_operations()]
    assert "Research>BiasGelu" in op_types and "BiasAdd" not in op_types and "Research>Gelu" not in op_types


def _op_types(graph):
    """Op types of a traced graph and of every function in its library (custom gradients, nested calls)."""
    graph_def = graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_encoder_training_step_runs_the_research_kernels(native_library):
    """With backend 'auto' (the default) on CPU, the encoder's forward and backward run our kernels:
    attention softmax, head split/merge, layer norm, dropout and bias+GELU, not TF's own ops."""
    encoder = tiny_encoder(hidden_dropout_rate=0.1, attention_dropout_rate=0.1)
    inputs = {name: tf.constant(value) for name, value in encoder_inputs().items()}
    encoder(inputs)

    @tf.function
    def forward_and_backward(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(encoder(inputs, training=True)["sequence_output"])
        return tape.gradient(loss, encoder.trainable_variables)

    types = _op_types(forward_and_backward.get_concrete_function(inputs).graph)
    expected = {"Research>AttentionSoftmax", "Research>AttentionSoftmaxGrad", "Research>SplitHeads",
                "Research>MergeHeads", "Research>LayerNorm", "Research>LayerNormGrad", "Research>Dropout",
                "Research>BiasGelu", "Research>BiasGeluGrad"}
    assert expected <= types, f"missing from the traced graph: {sorted(expected - types)}"
    assert not types & {"Softmax", "Rsqrt", "StatelessRandomUniformV2", "Erf"}, sorted(types)


def test_dense_transposed_kernel_backward_survives_serialization():
    layer = layers.Dense(4, transposed_kernel_backward=True)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, layers.Dense) and restored.transposed_kernel_backward


def test_dense_input_gradient_reads_a_materialized_transposed_kernel():
    """The float32 backward pass calls the non-inlined transpose (which Grappler cannot fold into the
    matmul's flag); bfloat16 layers keep Keras' path."""
    def traced_op_types(dtype):
        layer = layers.Dense(8, transposed_kernel_backward=True, dtype=dtype)
        layer.build((None, 4))

        @tf.function
        def step(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                total = tf.reduce_sum(tf.cast(layer(inputs), tf.float32))
            return tape.gradient(total, inputs)

        graph = step.get_concrete_function(tf.TensorSpec([3, 4], tf.float32)).graph
        return {op.type for op in graph.get_operations()}

    assert {"PartitionedCall", "StatefulPartitionedCall"} & traced_op_types("float32")
    assert not {"PartitionedCall", "StatefulPartitionedCall"} & traced_op_types("mixed_bfloat16")
