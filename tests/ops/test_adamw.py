"""Research>ResourceApplyAdamW: the native kernel against its twin (decay, then ResourceApplyAdam), bit for bit."""
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.core import optimization as opt_lib

HYPER = dict(lr=1e-2, beta1=0.8, beta2=0.95, epsilon=1e-6)


def run_steps(backend, start, grads, decay, jit_compile=False):
    variable, m, v = (tf.Variable(start), tf.Variable(tf.zeros_like(start)), tf.Variable(tf.zeros_like(start)))

    @tf.function(jit_compile=jit_compile)
    def step(grad, t):
        ops.apply_adamw(variable, m, v, grad, beta1_power=0.8 ** t, beta2_power=0.95 ** t, decay=decay,
                        backend=backend, **HYPER)

    for t, grad in enumerate(grads, start=1):
        step(grad, float(t))
    return [x.numpy() for x in (variable, m, v)]


# [300007]: ragged and split over threads, every vectorized loop's tail covered.
@pytest.mark.parametrize("shape", [[], [0], [5], [50, 7], [300007]])
@pytest.mark.parametrize("decay", [None, 0.01, 0.0])
def test_native_matches_the_twin_bit_for_bit(shape, decay):
    rng = np.random.RandomState(0)
    start = np.asarray(rng.randn(*shape), np.float32)
    grads = [tf.constant(np.asarray(rng.randn(*shape), np.float32)) for _ in range(3)]
    native = run_steps("native", start, grads, decay)
    reference = run_steps("reference", start, grads, decay)
    for n, r in zip(native, reference):
        np.testing.assert_array_equal(n, r)
    if shape and shape[0]:
        assert np.abs(native[0] - start).max() > 0.01


def test_decay_is_applied_before_the_adam_step():
    start = np.float32([1.0, -2.0, 4.0])
    zero = [tf.zeros([3])]
    variable = run_steps("native", start, zero, decay=0.1)[0]
    np.testing.assert_allclose(variable, start * 0.9, rtol=1e-6)  # a zero gradient: m = v = 0, no Adam move


def test_without_decay_an_infinite_value_stays_infinite():
    start = np.float32([np.inf, 1.0])
    variable = run_steps("native", start, [tf.constant([0.0, 1.0])], decay=None)[0]
    assert variable[0] == np.inf and np.isfinite(variable[1])


def test_auto_uses_the_twin_under_xla():
    rng = np.random.RandomState(1)
    start = np.asarray(rng.randn(40), np.float32)
    grads = [tf.constant(np.asarray(rng.randn(40), np.float32))]
    compiled = run_steps("auto", start, grads, 0.01, jit_compile=True)
    native = run_steps("native", start, grads, 0.01)
    for c, n in zip(compiled, native):
        np.testing.assert_allclose(c, n, rtol=1e-6, atol=1e-7)


def test_shapes_and_dtypes_are_checked_by_name():
    variable, m, v = tf.Variable(tf.zeros([4])), tf.Variable(tf.zeros([4])), tf.Variable(tf.zeros([3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="v \\[3\\] and grad \\[4\\] must have the same shape"):
        ops.apply_adamw(variable, m, v, tf.ones([4]), beta1_power=0.8, beta2_power=0.95, decay=None,
                        backend="native", **HYPER)
    half = tf.Variable(tf.zeros([4], tf.float16))
    with pytest.raises(TypeError, match="must be float32, got float16"):
        ops.apply_adamw(half, half, half, tf.ones([4], tf.float16), beta1_power=0.8, beta2_power=0.95, decay=None,
                        **HYPER)


def test_adamw_optimizer_runs_the_kernel_once_per_variable():
    variables = [tf.Variable(tf.ones([3, 2])), tf.Variable(tf.ones([2]))]
    optimizer = opt_lib.AdamW(learning_rate=1e-2, weight_decay=0.01)
    step = tf.function(lambda grads: optimizer.apply(grads, variables))
    graph = step.get_concrete_function([tf.TensorSpec([3, 2]), tf.TensorSpec([2])]).graph
    op_types = [op.type for op in graph.get_operations()]
    assert op_types.count("Research>ResourceApplyAdamW") == 2
    assert "ResourceApplyAdam" not in op_types and "AssignSubVariableOp" not in op_types
