"""Research>SplitHeads / Research>MergeHeads against their twins (reshape, transpose, unstack / stack)."""
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.ops._loader import LIBRARY


def split_values_and_gradient(x, groups, heads, backend, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        parts = ops.split_heads(x, groups, heads, backend=backend)
        total = tf.add_n([tf.reduce_sum(tf.cast(p, tf.float32) * u) for p, u in zip(parts, upstream)])
    return parts, tape.gradient(total, x)


def merge_values_and_gradients(parts, backend, upstream):
    with tf.GradientTape() as tape:
        tape.watch(parts)
        merged = ops.merge_heads(parts, backend=backend)
        total = tf.reduce_sum(tf.cast(merged, tf.float32) * upstream)
    return merged, tape.gradient(total, parts)


def test_native_library_is_built_and_the_gradients_registered():
    from tensorflow.python.framework import ops as tf_ops
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
    assert tf_ops.gradient_registry.lookup("Research>SplitHeads") is not None
    assert tf_ops.gradient_registry.lookup("Research>MergeHeads") is not None


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16, tf.float16])
@pytest.mark.parametrize("batch,seq_len,groups,heads,size", [(2, 5, 3, 4, 8), (1, 1, 1, 1, 1), (3, 128, 3, 8, 64),
                                                              (2, 7, 1, 2, 3)])
def test_native_is_the_twin_exactly(dtype, batch, seq_len, groups, heads, size):
    rng = np.random.RandomState(batch * seq_len + size)
    x = tf.cast(rng.randn(batch, seq_len, groups * heads * size), dtype)
    upstream = [tf.constant(rng.randn(batch, heads, seq_len, size), tf.float32) for _ in range(groups)]
    native, native_dx = split_values_and_gradient(x, groups, heads, "native", upstream)
    reference, reference_dx = split_values_and_gradient(x, groups, heads, "reference", upstream)
    assert len(native) == groups
    for n, r in zip(native, reference):
        assert n.shape == [batch, heads, seq_len, size] and n.dtype == dtype
        np.testing.assert_array_equal(n.numpy(), r.numpy())
    np.testing.assert_array_equal(native_dx.numpy(), reference_dx.numpy())
    merged_upstream = tf.constant(rng.randn(batch, seq_len, groups * heads * size), tf.float32)
    merged, d_parts = merge_values_and_gradients(native, "native", merged_upstream)
    merged_reference, d_parts_reference = merge_values_and_gradients(native, "reference", merged_upstream)
    np.testing.assert_array_equal(merged.numpy(), x.numpy())  # the inverse of the split
    np.testing.assert_array_equal(merged_reference.numpy(), x.numpy())
    for n, r in zip(d_parts, d_parts_reference):
        np.testing.assert_array_equal(n.numpy(), r.numpy())


def test_gradient_with_unused_groups():
    x = tf.constant(np.random.RandomState(0).randn(2, 3, 12), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        query, _, _ = ops.split_heads(x, 3, 2, backend="native")
        total = tf.reduce_sum(query)
    expected = np.zeros([2, 3, 3, 2, 2], np.float32)
    expected[:, :, 0] = 1
    np.testing.assert_array_equal(tape.gradient(total, x).numpy(), expected.reshape(2, 3, 12))


def test_static_shapes_in_graphs():
    @tf.function(input_signature=[tf.TensorSpec([None, None, 48])])
    def split_then_merge(x):
        parts = ops.split_heads(x, 3, 4, backend="native")
        assert all(p.shape.as_list() == [None, 4, None, 4] for p in parts)
        merged = ops.merge_heads(parts[:1], backend="native")
        assert merged.shape.as_list() == [None, None, 16]
        return merged

    x = tf.ones([2, 3, 48])
    assert split_then_merge(x).shape == [2, 3, 16]


def test_xla_uses_the_twin():
    x = tf.constant(np.random.RandomState(1).randn(2, 4, 24), tf.float32)
    compiled = tf.function(lambda x: ops.merge_heads(ops.split_heads(x, 3, 2)[1:]), jit_compile=True)(x)
    np.testing.assert_array_equal(compiled.numpy(), x.numpy()[:, :, 8:])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="not a multiple of num_groups \\* num_heads = 3 \\* 4"):
        ops.split_heads(tf.ones([2, 3, 10]), 3, 4)
    with pytest.raises(ValueError, match="num_heads must be an int >= 1"):
        ops.split_heads(tf.ones([2, 3, 12]), 3, 0)
    with pytest.raises(ValueError, match=r"x must be \[batch, seq_len"):
        ops.split_heads(tf.ones([2, 12]), 3, 4)
    with pytest.raises(ValueError, match="non-empty"):
        ops.merge_heads([])
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        ops.merge_heads([tf.ones([1, 2, 3, 4]), tf.ones([1, 2, 3, 5])], backend="native")
    with pytest.raises(TypeError, match="int32"):
        ops.split_heads(tf.ones([1, 2, 3], tf.int32), 1, 1, backend="native")


def test_empty_batch():
    parts = ops.split_heads(tf.zeros([0, 3, 12]), 3, 2, backend="native")
    assert [p.shape for p in parts] == [[0, 2, 3, 2]] * 3
    assert ops.merge_heads(parts, backend="native").shape == [0, 3, 12]
