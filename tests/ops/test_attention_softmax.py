"""Research>AttentionSoftmax / Research>AttentionSoftmaxGrad against the twin (float32 TensorFlow ops)."""
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.ops._loader import LIBRARY


def values_and_gradients(scores, input_mask, scale, backend, upstream):
    with tf.GradientTape() as tape:
        tape.watch(scores)
        probs = ops.attention_softmax(scores, input_mask, scale, backend=backend)
    return probs, tape.gradient(probs, scores, output_gradients=upstream)


def random_inputs(shape, seed, dtype=tf.float32, padded=True):
    rng = np.random.RandomState(seed)
    batch, _, _, keys = shape
    scores = tf.cast(rng.randn(*shape) * 6, dtype)
    lengths = rng.randint(1, keys + 1, size=batch) if padded else np.full(batch, keys)
    mask = tf.constant((np.arange(keys)[None, :] < lengths[:, None]).astype(np.int32))
    upstream = tf.cast(rng.randn(*shape), dtype)
    return scores, mask, upstream


def test_native_library_is_built_and_the_gradient_registered():
    from tensorflow.python.framework import ops as tf_ops
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
    assert tf_ops.gradient_registry.lookup("Research>AttentionSoftmax") is not None


# Key counts around the 16-lane loops (a tail, none, one), a single key, and rows split over threads.
@pytest.mark.parametrize("shape", [[2, 3, 5, 7], [3, 2, 4, 16], [2, 2, 3, 33], [1, 1, 1, 1], [4, 8, 128, 128]])
def test_float32_native_matches_the_twin(shape):
    scores, mask, upstream = random_inputs(shape, seed=sum(shape))
    native = values_and_gradients(scores, mask, 0.125, "native", upstream)
    reference = values_and_gradients(scores, mask, 0.125, "reference", upstream)
    for n, r in zip(native, reference):
        assert n.shape == scores.shape and n.dtype == tf.float32
        np.testing.assert_allclose(n.numpy(), r.numpy(), rtol=2e-5, atol=1e-7)


def test_padding_keys_get_zero_probability_and_rows_sum_to_one():
    scores, mask, _ = random_inputs([3, 2, 4, 9], seed=3)
    probs = ops.attention_softmax(scores, mask, 0.5, backend="native").numpy()
    padding = mask.numpy()[:, None, None, :] == 0
    assert np.all(probs[np.broadcast_to(padding, probs.shape)] == 0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_a_row_without_real_keys_is_uniform_as_in_the_twin():
    scores = tf.constant(np.random.RandomState(4).randn(1, 1, 2, 5), tf.float32)
    mask = tf.zeros([1, 5], tf.int32)
    native = ops.attention_softmax(scores, mask, 1.0, backend="native")
    reference = ops.attention_softmax(scores, mask, 1.0, backend="reference")
    np.testing.assert_allclose(native.numpy(), np.full([1, 1, 2, 5], 0.2), rtol=1e-6)
    np.testing.assert_allclose(native.numpy(), reference.numpy(), rtol=1e-6)


def test_large_scores_do_not_overflow():
    scores = tf.constant([[[[1e30, -1e30, 0.0, 88.0], [500.0, 400.0, -500.0, 0.0]]]], tf.float32)
    mask = tf.ones([1, 4], tf.int32)
    native = ops.attention_softmax(scores, mask, 1.0, backend="native")
    reference = ops.attention_softmax(scores, mask, 1.0, backend="reference")
    np.testing.assert_allclose(native.numpy(), reference.numpy(), rtol=1e-6, atol=1e-30)


def test_bfloat16_results_are_the_float32_results_rounded_once():
    scores, mask, upstream = random_inputs([2, 4, 16, 37], seed=5, dtype=tf.bfloat16)
    probs, d_scores = values_and_gradients(scores, mask, 0.125, "native", upstream)
    assert probs.dtype == tf.bfloat16 and d_scores.dtype == tf.bfloat16
    probs32 = ops.attention_softmax(tf.cast(scores, tf.float32), mask, 0.125, backend="native")
    np.testing.assert_array_equal(tf.bitcast(probs, tf.uint16).numpy(),
                                  tf.bitcast(tf.cast(probs32, tf.bfloat16), tf.uint16).numpy())
    # The gradient reads the rounded probabilities: the float32 kernel given those, rounded once.
    d_scores32 = LIBRARY.get().research_attention_softmax_grad(tf.cast(upstream, tf.float32),
                                                               tf.cast(probs, tf.float32), scale=0.125)
    np.testing.assert_array_equal(tf.bitcast(d_scores, tf.uint16).numpy(),
                                  tf.bitcast(tf.cast(d_scores32, tf.bfloat16), tf.uint16).numpy())


def test_bfloat16_gradient_is_close_to_the_float32_twin():
    scores, mask, upstream = random_inputs([2, 2, 8, 20], seed=6, dtype=tf.bfloat16)
    _, native = values_and_gradients(scores, mask, 0.125, "native", upstream)
    _, reference = values_and_gradients(tf.cast(scores, tf.float32), mask, 0.125, "reference",
                                         tf.cast(upstream, tf.float32))
    np.testing.assert_allclose(tf.cast(native, tf.float32).numpy(), reference.numpy(), rtol=3e-2, atol=2e-3)


def test_auto_uses_the_twin_under_xla():
    scores, mask, _ = random_inputs([2, 2, 3, 6], seed=7)
    compiled = tf.function(lambda s, m: ops.attention_softmax(s, m, 0.25), jit_compile=True)(scores, mask)
    np.testing.assert_allclose(compiled.numpy(), ops.attention_softmax(scores, mask, 0.25, backend="native").numpy(),
                               rtol=2e-5, atol=1e-7)


def test_other_dtypes_use_the_twin_or_fail_clearly_with_native():
    scores = tf.zeros([1, 1, 2, 3], tf.float16)
    mask = tf.ones([1, 3], tf.int32)
    probs = ops.attention_softmax(scores, mask, 1.0)
    assert probs.dtype == tf.float16
    np.testing.assert_allclose(probs.numpy(), np.full([1, 1, 2, 3], 1 / 3), rtol=1e-3)
    with pytest.raises(TypeError, match="float16"):
        ops.attention_softmax(scores, mask, 1.0, backend="native")


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"scores must be \[batch, heads, queries, keys\]"):
        ops.attention_softmax(tf.zeros([2, 3, 4]), tf.ones([2, 4], tf.int32), 1.0)
    with pytest.raises(ValueError, match=r"input_mask must be \[batch, keys\]"):
        ops.attention_softmax(tf.zeros([2, 1, 3, 4]), tf.ones([2, 1, 4], tf.int32), 1.0)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="5"):
        ops.attention_softmax(tf.zeros([2, 1, 3, 4]), tf.ones([2, 5], tf.int32), 1.0, backend="native")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"input_mask must be \[batch, keys\] = \[2, 4\]"):
        tf.function(lambda s, m: ops.attention_softmax(s, m, 1.0, backend="native"),
                    input_signature=[tf.TensorSpec([None, None, None, None]), tf.TensorSpec([None, None], tf.int32)])(
            tf.zeros([2, 1, 3, 4]), tf.ones([3, 4], tf.int32))


def test_empty_inputs():
    probs, d_scores = values_and_gradients(tf.zeros([0, 2, 3, 4]), tf.zeros([0, 4], tf.int32), 1.0, "native",
                                           tf.zeros([0, 2, 3, 4]))
    assert probs.shape == [0, 2, 3, 4] and d_scores.shape == [0, 2, 3, 4]
