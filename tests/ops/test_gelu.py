"""Research>Gelu / Research>GeluGrad against the twin (tf.nn.gelu, approximate=False)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.modeling import layers
from research.ops._loader import LIBRARY


def values_and_gradients(x, backend, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ops.gelu(x, backend=backend)
    return y, tape.gradient(y, x, output_gradients=upstream)


def test_native_library_is_built_and_the_gradient_registered():
    from tensorflow.python.framework import ops as tf_ops
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
    assert tf_ops.gradient_registry.lookup("Research>Gelu") is not None


@pytest.mark.parametrize("shape", [[], [0], [5], [3, 1000], [2, 7, 33], [300007]])
def test_float32_native_matches_the_twin(shape):
    rng = np.random.RandomState(0)
    x = tf.constant(np.asarray(rng.randn(*shape) * 4, np.float32))
    upstream = tf.constant(np.asarray(rng.randn(*shape), np.float32))
    native = values_and_gradients(x, "native", upstream)
    reference = values_and_gradients(x, "reference", upstream)
    for n, r in zip(native, reference):
        assert n.shape == x.shape and n.dtype == tf.float32
        np.testing.assert_allclose(n.numpy(), r.numpy(), rtol=1e-6, atol=1e-6)


def test_extremes():
    x = tf.constant([-1e30, -40.0, -10.0, 0.0, 10.0, 40.0, 1e30, np.inf, -np.inf, np.nan])
    y, dx = values_and_gradients(x, "native", tf.ones_like(x))
    np.testing.assert_array_equal(y.numpy()[:7], np.float32([0, 0, 0, 0, 10, 40, 1e30]))
    np.testing.assert_allclose(dx.numpy()[:7], [0, 0, 0, 0.5, 1, 1, 1], rtol=1e-7, atol=1e-20)
    assert y.numpy()[7] == np.inf and np.isnan(y.numpy()[9])


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_16_bit_inputs_are_computed_in_float32_and_rounded_once(dtype):
    rng = np.random.RandomState(1)
    x = tf.cast(rng.randn(4, 300) * 3, dtype)
    upstream = tf.cast(rng.randn(4, 300), dtype)
    y, dx = values_and_gradients(x, "native", upstream)
    assert y.dtype == dtype and dx.dtype == dtype
    exact_y, exact_dx = values_and_gradients(tf.cast(x, tf.float32), "reference", tf.cast(upstream, tf.float32))
    # Rounded once from float32; the float32 results differ in the far negative tail (|gelu| < 1e-4),
    # where 1 + erf(x) cancels and the kernel's and TensorFlow's erf round differently.
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), tf.cast(tf.cast(exact_y, dtype), tf.float32).numpy(),
                               rtol=1e-2, atol=1e-4)
    np.testing.assert_allclose(tf.cast(dx, tf.float32).numpy(), tf.cast(tf.cast(exact_dx, dtype), tf.float32).numpy(),
                               rtol=1e-2, atol=1e-2)


def test_bfloat16_results_are_the_float32_results_rounded_once():
    # Ragged length and large enough to be split over threads: every vectorized loop's tail is covered.
    rng = np.random.RandomState(2)
    x = tf.cast(rng.randn(300007) * 3, tf.bfloat16)
    upstream = tf.cast(rng.randn(300007), tf.bfloat16)
    y, dx = values_and_gradients(x, "native", upstream)
    y32, dx32 = values_and_gradients(tf.cast(x, tf.float32), "native", tf.cast(upstream, tf.float32))
    np.testing.assert_array_equal(tf.bitcast(y, tf.uint16).numpy(), tf.bitcast(tf.cast(y32, tf.bfloat16), tf.uint16))
    np.testing.assert_array_equal(tf.bitcast(dx, tf.uint16).numpy(),
                                  tf.bitcast(tf.cast(dx32, tf.bfloat16), tf.uint16))


def test_auto_uses_the_twin_under_xla():
    x = tf.constant(np.linspace(-5, 5, 101, dtype=np.float32))
    compiled = tf.function(lambda x: ops.gelu(x), jit_compile=True)(x)
    np.testing.assert_allclose(compiled.numpy(), ops.gelu(x, backend="native").numpy(), rtol=1e-6, atol=1e-6)


def test_other_dtypes_use_the_twin_or_fail_clearly_with_native():
    x = tf.constant([0.5, -1.0], tf.float64)
    np.testing.assert_allclose(ops.gelu(x).numpy(), tf.nn.gelu(x, approximate=False).numpy())
    with pytest.raises(TypeError, match="x must be one of"):
        ops.gelu(x, backend="native")


def test_gradient_shapes_must_agree():
    with pytest.raises(tf.errors.InvalidArgumentError, match="must have the same shape"):
        LIBRARY.get().research_gelu_grad(tf.ones([3]), tf.ones([4]))


def test_it_is_the_models_gelu_and_serializes_as_a_keras_activation(tmp_path):
    assert layers.get_activation("gelu") is ops.gelu
    assert layers.get_activation("tanh") is keras.activations.tanh
    inputs = keras.Input([6])
    model = keras.Model(inputs, keras.layers.Dense(4, activation=ops.gelu)(inputs))
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.models.load_model(str(tmp_path / "m.keras"))
    x = np.random.RandomState(2).randn(3, 6).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)


def bias_gelu_values_and_gradients(x, bias, backend, upstream):
    with tf.GradientTape() as tape:
        tape.watch([x, bias])
        y = ops.bias_gelu(x, bias, backend=backend)
    return [y] + tape.gradient(y, [x, bias], output_gradients=upstream)


# Channel counts around the 16-wide vector loops, rows too few and enough to split over threads.
@pytest.mark.parametrize("shape", [[7], [3, 1], [5, 33], [2, 3, 16], [1000, 37], [256, 2048]])
def test_bias_gelu_float32_native_matches_the_twin(shape):
    rng = np.random.RandomState(len(shape) + shape[-1])
    x = tf.constant(np.asarray(rng.randn(*shape) * 3, np.float32))
    bias = tf.constant(np.asarray(rng.randn(shape[-1]), np.float32))
    upstream = tf.constant(np.asarray(rng.randn(*shape), np.float32))
    native = bias_gelu_values_and_gradients(x, bias, "native", upstream)
    reference = bias_gelu_values_and_gradients(x, bias, "reference", upstream)
    for n, r in zip(native, reference):
        assert n.shape == r.shape and n.dtype == tf.float32
        # The bias gradient sums up to 256 rows in another order than BiasAddGrad.
        np.testing.assert_allclose(n.numpy(), r.numpy(), rtol=1e-5, atol=2e-5)


def test_bias_gelu_bfloat16_results_are_the_float32_results_rounded_once():
    rng = np.random.RandomState(3)
    x = tf.cast(rng.randn(300, 37) * 3, tf.bfloat16)
    bias = tf.cast(rng.randn(37), tf.bfloat16)
    upstream = tf.cast(rng.randn(300, 37), tf.bfloat16)
    results = bias_gelu_values_and_gradients(x, bias, "native", upstream)
    exact = bias_gelu_values_and_gradients(tf.cast(x, tf.float32), tf.cast(bias, tf.float32), "native",
                                           tf.cast(upstream, tf.float32))
    for result, value in zip(results, exact):
        assert result.dtype == tf.bfloat16
        np.testing.assert_array_equal(tf.bitcast(result, tf.uint16).numpy(),
                                      tf.bitcast(tf.cast(value, tf.bfloat16), tf.uint16).numpy())


def test_bias_gelu_bad_bias_is_named():
    with pytest.raises(ValueError, match=r"bias must be \[channels\]"):
        ops.bias_gelu(tf.ones([2, 3]), tf.ones([1, 3]))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="4"):
        ops.bias_gelu(tf.ones([2, 3]), tf.ones([4]), backend="native")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"bias must be \[channels\] for x's last axis"):
        LIBRARY.get().research_bias_gelu_grad(tf.ones([2, 3]), tf.ones([2, 3]), tf.ones([4]))


def test_bias_gelu_under_xla_and_other_dtypes_use_the_twin():
    x = tf.constant(np.linspace(-5, 5, 60, dtype=np.float32).reshape(6, 10))
    bias = tf.constant(np.linspace(-1, 1, 10, dtype=np.float32))
    compiled = tf.function(lambda x, b: ops.bias_gelu(x, b), jit_compile=True)(x, bias)
    np.testing.assert_allclose(compiled.numpy(), ops.bias_gelu(x, bias, backend="native").numpy(), rtol=1e-6,
                               atol=1e-6)
    half = ops.bias_gelu(tf.cast(x, tf.float16), bias)
    assert half.dtype == tf.float16
    with pytest.raises(TypeError, match="x must be one of"):
        ops.bias_gelu(tf.cast(x, tf.float16), bias, backend="native")
