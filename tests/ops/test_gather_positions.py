"""Research>GatherPositions and its gradient: the native kernels against tf.gather(batch_dims=1)."""
import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from research import ops
from research.ops._loader import LIBRARY

BACKENDS = ["native", "reference"]
DTYPES = [tf.float32, tf.bfloat16, tf.float16]
FEW = settings(max_examples=12, deadline=None)


def random_inputs(seed, batch, seq_len, num_positions, hidden, dtype=tf.float32):
    rng = np.random.RandomState(seed)
    sequence = tf.cast(rng.randn(batch, seq_len, hidden).astype(np.float32), dtype)
    positions = rng.randint(0, max(seq_len, 1), size=[batch, num_positions]).astype(np.int32)
    return sequence, positions


def gradients(sequence, positions, weights, backend):
    """d sum(gather(sequence) * weights) / d sequence, dense."""
    with tf.GradientTape() as tape:
        tape.watch(sequence)
        loss = tf.reduce_sum(ops.gather_positions(sequence, positions, backend=backend) * weights)
    return tf.convert_to_tensor(tape.gradient(loss, sequence))


def test_native_library_is_built_and_the_gradient_registered():
    from tensorflow.python.framework import ops as tf_ops
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason
    assert tf_ops.gradient_registry.lookup("Research>GatherPositions") is not None
    assert tf_ops.gradient_registry.lookup("Research>GatherPositionsGrad") is not None


@FEW
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(0, 4), seq_len=st.integers(1, 12),
       num_positions=st.integers(0, 8), hidden=st.integers(1, 9), dtype=st.sampled_from(DTYPES),
       backend=st.sampled_from(BACKENDS))
def test_forward_equals_tf_gather(seed, batch, seq_len, num_positions, hidden, dtype, backend):
    sequence, positions = random_inputs(seed, batch, seq_len, num_positions, hidden, dtype)
    out = ops.gather_positions(sequence, positions, backend=backend)
    assert out.dtype == dtype and out.shape == (batch, num_positions, hidden)
    expected = tf.gather(sequence, positions, batch_dims=1)
    np.testing.assert_array_equal(tf.cast(out, tf.float32).numpy(), tf.cast(expected, tf.float32).numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 5, 3, 4), (3, 5, 0, 4), (0, 0, 0, 4), (2, 0, 0, 3), (2, 5, 3, 0)])
def test_empty_shapes(backend, dtype, shape):
    batch, seq_len, num_positions, hidden = shape
    sequence, positions = random_inputs(0, batch, seq_len, num_positions, hidden, dtype)
    out = ops.gather_positions(sequence, positions, backend=backend)
    assert out.shape == (batch, num_positions, hidden) and out.dtype == dtype
    grad = gradients(sequence, positions, tf.ones(out.shape, dtype), backend)
    assert grad.shape == sequence.shape
    np.testing.assert_array_equal(tf.cast(grad, tf.float32).numpy(), 0.0)


@FEW
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(0, 4), seq_len=st.integers(1, 6),
       num_positions=st.integers(0, 10), hidden=st.integers(1, 9))
def test_float32_gradient_equals_the_reference_gradient(seed, batch, seq_len, num_positions, hidden):
    """seq_len <= 6 with up to 10 positions: duplicates are the rule, and they must accumulate."""
    sequence, positions = random_inputs(seed, batch, seq_len, num_positions, hidden)
    weights = tf.constant(np.random.RandomState(seed + 1).randn(batch, num_positions, hidden).astype(np.float32))
    native = gradients(sequence, positions, weights, "native")
    reference = gradients(sequence, positions, weights, "reference")
    assert native.dtype == tf.float32 and native.shape == sequence.shape
    np.testing.assert_allclose(native.numpy(), reference.numpy(), rtol=1e-6, atol=1e-6)


@FEW
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(0, 3), seq_len=st.integers(1, 6),
       num_positions=st.integers(0, 12), hidden=st.integers(1, 9), dtype=st.sampled_from(DTYPES[1:]))
def test_low_precision_gradient_accumulates_in_float32(seed, batch, seq_len, num_positions, hidden, dtype):
    """bfloat16/float16: the native gradient is the float32 sum of the rows, rounded once."""
    sequence, positions = random_inputs(seed, batch, seq_len, num_positions, hidden, dtype)
    weights = tf.cast(np.random.RandomState(seed + 1).randn(batch, num_positions, hidden).astype(np.float32), dtype)
    native = gradients(sequence, positions, weights, "native")
    assert native.dtype == dtype and native.shape == sequence.shape
    in_float32 = gradients(tf.cast(sequence, tf.float32), positions, tf.cast(weights, tf.float32), "reference")
    rounded_once = tf.cast(tf.cast(in_float32, dtype), tf.float32).numpy()
    # The float32 sums may differ in their last bit (summation order), which rarely moves the rounding.
    ulp = 2.0 ** -7 if dtype == tf.bfloat16 else 2.0 ** -10
    np.testing.assert_allclose(tf.cast(native, tf.float32).numpy(), rounded_once, rtol=ulp, atol=1e-6)
    reference = gradients(sequence, positions, weights, "reference")  # accumulates in the low precision
    np.testing.assert_allclose(tf.cast(native, tf.float32).numpy(), tf.cast(reference, tf.float32).numpy(),
                               rtol=4 * num_positions * ulp + ulp, atol=4 * num_positions * ulp)


@pytest.mark.parametrize("dtype", DTYPES)
def test_duplicate_positions_accumulate(dtype):
    sequence = tf.zeros([2, 4, 3], dtype)
    positions = np.array([[1, 1, 1, 3], [0, 2, 0, 0]], np.int32)
    weights = tf.cast(np.arange(24, dtype=np.float32).reshape(2, 4, 3) / 8, dtype)
    grad = tf.cast(gradients(sequence, positions, weights, "native"), tf.float32).numpy()
    w = weights.numpy().astype(np.float32)
    expected = np.zeros([2, 4, 3], np.float32)
    expected[0, 1] = w[0, 0] + w[0, 1] + w[0, 2]
    expected[0, 3] = w[0, 3]
    expected[1, 0] = w[1, 0] + w[1, 2] + w[1, 3]
    expected[1, 2] = w[1, 1]
    np.testing.assert_array_equal(grad, expected)


def test_bfloat16_duplicates_do_not_lose_small_rows():
    """256 + 1 + 1 + ... in bfloat16, summed naively, stays 256; accumulated in float32 it does not."""
    sequence = tf.zeros([1, 2, 1], tf.bfloat16)
    positions = np.zeros([1, 9], np.int32)
    weights = tf.constant([[[256.0]] + [[1.0]] * 8], tf.bfloat16)
    grad = gradients(sequence, positions, weights, "native")
    assert float(grad[0, 0, 0]) == 264.0
    assert float(grad[0, 1, 0]) == 0.0


def test_compute_gradient_theoretical_matches_numerical():
    sequence, positions = random_inputs(3, 3, 7, 9, 5)  # duplicates included
    theoretical, numerical = tf.test.compute_gradient(
        lambda s: ops.gather_positions(s, positions, backend="native"), [sequence])
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-3, atol=1e-3)


def test_second_order_gradient_of_the_scatter_add():
    _, positions = random_inputs(4, 2, 5, 6, 3)
    grad = tf.constant(np.random.RandomState(5).randn(2, 6, 3).astype(np.float32))
    scatter = LIBRARY.get().research_gather_positions_grad
    theoretical, numerical = tf.test.compute_gradient(lambda g: scatter(g, positions, 5), [grad])
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [-1, 8, 130])
def test_out_of_range_positions_are_named(backend, bad):
    sequence, positions = random_inputs(6, 2, 8, 5, 4)
    positions[1, 3] = bad
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        ops.gather_positions(sequence, positions, backend=backend)
    message = str(error.value)
    # native: "positions[1, 3] = 8 is outside [0, seq_len=8)"; tf.gather: "indices[1,3] = 8 is not in [0, 8)"
    assert re.search(rf"\[1, ?3\] = {bad} is ", message), message
    if backend == "native":
        assert f"positions[1, 3] = {bad} is outside [0, seq_len=8)" in message


@pytest.mark.parametrize("bad", [-2, 8])
def test_gradient_kernel_checks_positions_itself(bad):
    positions = np.zeros([2, 3], np.int32)
    positions[0, 2] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(f"positions[0, 2] = {bad} is outside [0, "
                                                                       "seq_len=8)")):
        LIBRARY.get().research_gather_positions_grad(tf.ones([2, 3, 4]), positions, 8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sequence_shape,positions_shape,message", [
    ([4, 8], [4, 2], "sequence must be rank 3 [batch, seq_len, hidden], got shape (4, 8)"),
    ([2, 4, 8, 1], [2, 2], "sequence must be rank 3"),
    ([4, 8, 3], [4], "positions must be rank 2 [batch, P], got shape (4,)"),
    ([4, 8, 3], [4, 2, 1], "positions must be rank 2"),
    ([4, 8, 3], [3, 2], "must have the same batch size"),
])
def test_bad_ranks_and_batch_sizes_are_refused(backend, sequence_shape, positions_shape, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        ops.gather_positions(tf.zeros(sequence_shape), tf.zeros(positions_shape, tf.int32), backend=backend)


@pytest.mark.parametrize("sequence_shape,positions_shape,message", [
    ([4, 8], [4, 2], "sequence must be rank 3 [batch, seq_len, hidden], got shape [4,8]"),
    ([4, 8, 3], [4], "positions must be rank 2 [batch, P], got shape [4]"),
    ([4, 8, 3], [3, 2], "must have the same batch size"),
])
def test_native_kernel_checks_shapes_without_static_shapes(sequence_shape, positions_shape, message):
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32), tf.TensorSpec(None, tf.int32)])
    def gather(sequence, positions):
        return ops.gather_positions(sequence, positions, backend="native")

    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        gather(tf.zeros(sequence_shape), tf.zeros(positions_shape, tf.int32))


def test_shape_function_names_the_rank_in_a_graph():
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match=re.escape("Research>GatherPositions: sequence must be rank 3")):
            LIBRARY.get().research_gather_positions(tf.zeros([4, 8]), tf.zeros([4, 2], tf.int32))
        out = LIBRARY.get().research_gather_positions(tf.zeros([4, 8, 3]), tf.zeros([4, 2], tf.int32))
        assert out.shape.as_list() == [4, 2, 3]
        grad = LIBRARY.get().research_gather_positions_grad(tf.zeros([4, 2, 3]), tf.zeros([4, 2], tf.int32), 8)
        assert grad.shape.as_list() == [4, 8, 3]


def test_unsupported_dtype_and_backend_are_refused():
    with pytest.raises(TypeError, match="float64"):
        ops.gather_positions(tf.zeros([1, 2, 3], tf.float64), [[0]])
    with pytest.raises(ValueError, match="'fast'"):
        ops.gather_positions(tf.zeros([1, 2, 3]), [[0]], backend="fast")


def test_works_inside_tf_function_with_its_gradient():
    sequence, positions = random_inputs(7, 3, 10, 4, 6)
    weights = tf.constant(np.random.RandomState(8).randn(3, 4, 6).astype(np.float32))

    @tf.function
    def step(sequence, positions):
        return ops.gather_positions(sequence, positions, backend="native"), gradients(sequence, positions, weights,
                                                                                      "native")

    out, grad = step(sequence, tf.constant(positions))
    np.testing.assert_array_equal(out.numpy(), tf.gather(sequence, positions, batch_dims=1).numpy())
    np.testing.assert_allclose(grad.numpy(), gradients(sequence, positions, weights, "reference").numpy(),
                               rtol=1e-6, atol=1e-6)
    assert "Research>GatherPositionsGrad" in {
        op.type for op in step.get_concrete_function(sequence, tf.constant(positions)).graph.get_operations()}


def test_auto_uses_reference_under_jit_and_native_refuses_it():
    sequence, positions = random_inputs(9, 2, 6, 4, 3)
    weights = tf.ones([2, 4, 3])

    @tf.function(jit_compile=True)
    def auto(sequence, positions):
        return ops.gather_positions(sequence, positions), gradients(sequence, positions, weights, "auto")

    out, grad = auto(sequence, positions)
    np.testing.assert_array_equal(out.numpy(), tf.gather(sequence, positions, batch_dims=1).numpy())
    np.testing.assert_allclose(grad.numpy(), gradients(sequence, positions, weights, "native").numpy(), atol=1e-6)

    @tf.function(jit_compile=True)
    def native(sequence, positions):
        return ops.gather_positions(sequence, positions, backend="native")

    with pytest.raises(ValueError, match="XLA"):
        native(sequence, positions)
