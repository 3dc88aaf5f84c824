"""Research>LayerNorm / LayerNormGrad against the twin, and the Keras layer against Keras' own."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.modeling import layers
from research.ops._loader import LIBRARY


def run(backend, x, gamma, beta, upstream, epsilon=1e-12):
    with tf.GradientTape() as tape:
        tape.watch([x, gamma, beta])
        y = ops.layer_norm(x, gamma, beta, epsilon, backend=backend)
    return [y] + tape.gradient(y, [x, gamma, beta], output_gradients=upstream)


def inputs(shape, dtype=tf.float32, seed=0):
    rng = np.random.RandomState(seed)
    x = tf.cast(np.asarray(rng.randn(*shape) * 3 + 1, np.float32), dtype)
    gamma = tf.constant(rng.randn(shape[-1]).astype(np.float32))
    beta = tf.constant(rng.randn(shape[-1]).astype(np.float32))
    upstream = tf.cast(np.asarray(rng.randn(*shape), np.float32), dtype)
    return x, gamma, beta, upstream


def test_native_library_is_built_and_the_gradient_registered():
    from tensorflow.python.framework import ops as tf_ops
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
    assert tf_ops.gradient_registry.lookup("Research>LayerNorm") is not None


@pytest.mark.parametrize("shape", [[7], [3, 5], [2, 9, 33], [40, 512], [0, 8], [4, 1]])
def test_float32_native_matches_the_twin(shape):
    native = run("native", *inputs(shape))
    reference = run("reference", *inputs(shape))
    for name, n, r in zip(["y", "dx", "dgamma", "dbeta"], native, reference):
        scale = max(1.0, float(np.abs(r.numpy()).max(initial=0.0)))
        np.testing.assert_allclose(n.numpy(), r.numpy(), rtol=1e-5, atol=2e-6 * scale, err_msg=name)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_16_bit_inputs_are_normalized_in_float32(dtype):
    x, gamma, beta, upstream = inputs([6, 64], dtype)
    native = run("native", x, gamma, beta, upstream)
    exact = run("reference", tf.cast(x, tf.float32), gamma, beta, tf.cast(upstream, tf.float32))
    assert native[0].dtype == dtype and native[1].dtype == dtype
    for n, e in zip(native, exact):
        e = tf.cast(tf.cast(e, dtype), tf.float32) if e.shape == x.shape else e
        np.testing.assert_allclose(tf.cast(n, tf.float32).numpy(), e.numpy(), rtol=2e-2,
                                   atol=2e-2 * max(1.0, float(np.abs(e.numpy()).max())))


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_16_bit_results_are_the_float32_results_rounded_once(dtype, backend):
    """Statistics, normalization and gradients in float32, rounded to 16 bits once at the end: the 16-bit
    outputs are bit for bit the float32 outputs (on the same 16-bit inputs) rounded. Rows of 768 over
    400 rows are split over threads; 33 leaves a ragged vector tail."""
    for shape in ([400, 768], [2, 5, 33]):
        x, gamma, beta, upstream = inputs(shape, dtype, seed=3)
        y, dx, dgamma, dbeta = run(backend, x, gamma, beta, upstream)
        y32, dx32, dgamma32, dbeta32 = run(backend, tf.cast(x, tf.float32), gamma, beta, tf.cast(upstream, tf.float32))
        for name, got, exact in (("y", y, y32), ("dx", dx, dx32)):
            assert got.dtype == dtype, name
            np.testing.assert_array_equal(tf.bitcast(got, tf.uint16).numpy(),
                                          tf.bitcast(tf.cast(exact, dtype), tf.uint16).numpy(), err_msg=f"{name} {shape}")
        np.testing.assert_array_equal(dgamma.numpy(), dgamma32.numpy(), err_msg=f"dgamma {shape}")
        np.testing.assert_array_equal(dbeta.numpy(), dbeta32.numpy(), err_msg=f"dbeta {shape}")


def test_constant_rows_and_large_offsets_stay_finite():
    x = tf.constant([[5.0] * 16, [1e4 + i * 1e-2 for i in range(16)]])
    y, dx, _, _ = run("native", x, tf.ones([16]), tf.zeros([16]), tf.ones_like(x), epsilon=1e-5)
    assert np.isfinite(y.numpy()).all() and np.isfinite(dx.numpy()).all()
    np.testing.assert_allclose(y.numpy()[0], 0.0, atol=1e-6)
    reference = run("reference", x, tf.ones([16]), tf.zeros([16]), tf.ones_like(x), epsilon=1e-5)[0]
    np.testing.assert_allclose(y.numpy(), reference.numpy(), rtol=1e-3, atol=1e-3)


def test_bad_arguments_are_named():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"gamma must have shape \[4\] \(x's last axis\), got \[3\]"):
        ops.layer_norm(tf.ones([2, 4]), tf.ones([3]), tf.ones([4]), 1e-6, backend="native")
    with pytest.raises(ValueError, match="epsilon must be a number >= 0"):
        ops.layer_norm(tf.ones([2, 4]), tf.ones([4]), tf.ones([4]), -1.0)
    with pytest.raises(TypeError, match="x must be one of"):
        ops.layer_norm(tf.ones([2, 4], tf.float64), tf.ones([4]), tf.ones([4]), 1e-6)


def test_auto_uses_the_twin_under_xla():
    x, gamma, beta, _ = inputs([5, 24])
    compiled = tf.function(lambda x: ops.layer_norm(x, gamma, beta, 1e-6), jit_compile=True)(x)
    np.testing.assert_allclose(compiled.numpy(), ops.layer_norm(x, gamma, beta, 1e-6, backend="native").numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_layer_matches_keras_layer_normalization(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        ours = layers.LayerNormalization(epsilon=1e-12)
        theirs = keras.layers.LayerNormalization(epsilon=1e-12)
        x = tf.constant(np.random.RandomState(5).randn(3, 4, 32).astype(np.float32))
        ours.build(x.shape)
        theirs.build(x.shape)
        for a, b in zip(ours.weights, theirs.weights):
            a.assign(np.random.RandomState(6).randn(*a.shape).astype(np.float32))
            b.assign(a.numpy())
        results = []
        for layer in (ours, theirs):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
            results.append([y] + tape.gradient(loss, [x] + layer.weights))
        tolerance = 1e-5 if policy == "float32" else 2e-2
        for a, b in zip(*results):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy(),
                                       rtol=tolerance, atol=tolerance * max(1.0, float(np.abs(b).max())))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_layer_keeps_keras_variables_config_and_other_axes():
    layer = layers.LayerNormalization(epsilon=1e-6, name="ln", backend="reference")
    layer.build((None, 8))
    assert isinstance(layer, keras.layers.LayerNormalization)
    assert [v.path for v in layer.weights] == ["ln/gamma", "ln/beta"]
    clone = layers.LayerNormalization.from_config(layer.get_config())
    assert (clone.epsilon, clone.backend) == (1e-6, "reference")
    x = tf.constant(np.random.RandomState(7).randn(2, 3, 8).astype(np.float32))
    other = layers.LayerNormalization(axis=1)
    reference = keras.layers.LayerNormalization(axis=1)
    np.testing.assert_allclose(other(x).numpy(), reference(x).numpy(), rtol=1e-5, atol=1e-6)
