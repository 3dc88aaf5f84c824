"""Research>Dropout: the native kernel against its TensorFlow twin, the mask's statistics, the gradient."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.modeling import layers
from research.ops._loader import LIBRARY

DTYPES = [tf.float32, tf.bfloat16, tf.float16]
BITS = {tf.float32: tf.uint32, tf.bfloat16: tf.uint16, tf.float16: tf.uint16}


def bits(x):
    return tf.bitcast(x, BITS[x.dtype]).numpy()


def random_x(shape, dtype=tf.float32, seed=0):
    return tf.cast(np.asarray(np.random.RandomState(seed).randn(*shape), np.float32), dtype)


def test_native_library_is_built_and_the_gradient_registered():
    from tensorflow.python.framework import ops as tf_ops
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
    assert tf_ops.gradient_registry.lookup("Research>Dropout") is not None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [[], [1], [7], [3, 5, 17], [2, 2, 128, 128], [0, 4]])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_native_equals_reference_bit_for_bit(dtype, shape, rate):
    x = random_x(shape, dtype)
    seed = tf.constant([123456789012, -42], tf.int64)
    native = ops.dropout(x, rate, seed, backend="native")
    reference = ops.dropout(x, rate, seed, backend="reference")
    assert native.dtype == dtype and native.shape == x.shape
    np.testing.assert_array_equal(bits(native), bits(reference))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_kept_elements_are_scaled_as_keras_scales_them(dtype):
    x = random_x([64, 65], dtype)
    y = ops.dropout(x, 0.25, [1, 2], backend="native")
    kept = y.numpy() != 0
    expected = (x * tf.constant(1 / 0.75, dtype)).numpy()
    np.testing.assert_array_equal(y.numpy()[kept], expected[kept])


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_keep_fraction_is_one_minus_rate(backend, rate):
    n = 1 << 20
    kept = ops.dropout(tf.ones([n]), rate, [5, 9], backend=backend).numpy() != 0
    sd = math.sqrt(rate * (1 - rate) / n)
    assert abs(kept.mean() - (1 - rate)) < 5 * sd
    # No structure along the index: the fraction kept is the same in the even and odd positions and
    # in the first and the second half.
    for part in (kept[::2], kept[1::2], kept[: n // 2], kept[n // 2:]):
        assert abs(part.mean() - (1 - rate)) < 5 * sd * math.sqrt(2)


def test_same_seed_same_mask_and_neighbouring_seeds_unrelated():
    x = tf.ones([1 << 18])
    rate = 0.5
    first = ops.dropout(x, rate, [7, 100]).numpy() != 0
    again = ops.dropout(x, rate, [7, 100]).numpy() != 0
    np.testing.assert_array_equal(first, again)
    # Keras' SeedGenerator steps seed[1] by one per call: the masks must agree only by chance (1/2).
    for other_seed in ([7, 101], [8, 100], [7 + (1 << 32), 100], [7, 100 + (1 << 32)]):
        other = ops.dropout(x, rate, other_seed).numpy() != 0
        agreement = (first == other).mean()
        assert abs(agreement - 0.5) < 5 * math.sqrt(0.25 / x.shape[0]), (other_seed, agreement)


def test_rate_zero_returns_the_input_unchanged():
    x = random_x([4, 5])
    assert ops.dropout(x, 0.0, [1, 2]) is x


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, True, "0.1", float("nan")])
def test_invalid_rates_are_named(rate):
    with pytest.raises(ValueError, match="rate must be a number in \\[0, 1\\), got"):
        ops.dropout(tf.ones([3]), rate, [1, 2])


def test_invalid_dtype_and_seed_are_named():
    with pytest.raises(TypeError, match="x must be one of"):
        ops.dropout(tf.ones([3], tf.float64), 0.1, [1, 2])
    with pytest.raises(ValueError, match=r"seed must have shape \[2\]"):
        ops.dropout(tf.ones([3]), 0.1, [1, 2, 3])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_gradient_is_the_mask_times_scale_and_matches_the_twin(dtype):
    x = random_x([6, 33], dtype)
    upstream = random_x([6, 33], dtype, seed=1)
    grads = {}
    for backend in ("native", "reference"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = ops.dropout(x, 0.3, [3, 4], backend=backend)
        grads[backend] = tape.gradient(y, x, output_gradients=upstream)
    np.testing.assert_array_equal(bits(grads["native"]), bits(grads["reference"]))
    kept = ops.dropout(tf.ones_like(x), 0.3, [3, 4]).numpy() != 0
    expected = np.where(kept, (upstream * tf.constant(1 / 0.7, dtype)).numpy(), 0)
    np.testing.assert_array_equal(grads["native"].numpy(), expected)


def test_auto_uses_the_twin_under_xla_with_the_same_mask():
    x = random_x([8, 40])
    seed = tf.constant([11, 12], tf.int64)
    compiled = tf.function(lambda x, s: ops.dropout(x, 0.2, s), jit_compile=True)(x, seed)
    np.testing.assert_array_equal(compiled.numpy(), ops.dropout(x, 0.2, seed, backend="native").numpy())
    with pytest.raises(ValueError, match="cannot run inside an XLA-compiled function"):
        tf.function(lambda x: ops.dropout(x, 0.2, [1, 2], backend="native"), jit_compile=True)(x)


def test_layer_is_identity_unless_training_and_draws_a_new_mask_per_call():
    layer = layers.Dropout(0.5, seed=3)
    x = tf.ones([32, 32])
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert set(np.unique(first)) == {0.0, 2.0}
    assert (first != second).any()


def test_layer_seeded_runs_repeat_and_config_round_trips():
    x = tf.ones([16, 16])
    runs = [layers.Dropout(0.4, seed=9)(x, training=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    layer = layers.Dropout(0.4, seed=9, backend="reference", name="drop")
    clone = layers.Dropout.from_config(layer.get_config())
    assert (clone.rate, clone.seed, clone.backend, clone.name) == (0.4, 9, "reference", "drop")
    with pytest.raises(ValueError, match="rate must be a number in \\[0, 1\\), got 1.0"):
        layers.Dropout(1.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        layers.Dropout(0.1, backend="fast")


def test_layer_in_a_keras_model_saves_and_loads(tmp_path):
    inputs = keras.Input([8])
    model = keras.Model(inputs, layers.Dropout(0.5, seed=1)(keras.layers.Dense(8)(inputs)))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.ones([2, 8], np.float32)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy())
