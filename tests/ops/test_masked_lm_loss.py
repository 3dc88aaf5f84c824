"""research.ops.masked_lm_loss (chunked native path, Research>SoftmaxXentChunk): values and gradients, native vs reference."""
import importlib

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from research import ops
from research.core.memory_profile import peak_live_tensor_bytes
from research.ops._loader import LIBRARY

BACKENDS = ["native", "reference", "chunked"]


def make_inputs(rng, n, d, v, scale=1.0, zero_fraction=0.3):
    hidden = (rng.randn(n, d) * scale).astype(np.float32)
    table = rng.randn(v, d).astype(np.float32)
    bias = rng.randn(v).astype(np.float32)
    labels = rng.randint(0, v, size=n).astype(np.int32)
    weights = np.where(rng.rand(n) < zero_fraction, 0.0, rng.uniform(0.5, 2.0, size=n)).astype(np.float32)
    return hidden, table, bias, labels, weights


def run(backend, hidden, table, bias, labels, weights, *, upstream=None, training=True, chunk_rows=0,
        dtype=tf.float32, matmul_dtype=tf.float32):
    """(loss, ids, [d_hidden, d_table, d_bias]) of sum(loss * upstream), or of sum(loss) / sum(weights)."""
    variables = [tf.constant(x, dtype=dtype) for x in (hidden, table, bias)]
    with tf.GradientTape() as tape:
        tape.watch(variables)
        loss, ids = ops.masked_lm_loss(*variables, labels, weights, backend=backend, training=training,
                                       chunk_rows=chunk_rows, matmul_dtype=matmul_dtype)
        if upstream is None:
            total = tf.reduce_sum(loss) / tf.maximum(tf.reduce_sum(tf.constant(weights)), 1e-6)
        else:
            total = tf.reduce_sum(loss * upstream)
    grads = tape.gradient(total, variables)
    for grad, variable in zip(grads, variables):
        assert grad.dtype == variable.dtype
    return loss.numpy(), ids.numpy(), [tf.cast(g, tf.float32).numpy() for g in grads]


def numpy_reference(hidden, table, bias, labels, weights):
    logits = hidden.astype(np.float64) @ table.astype(np.float64).T + bias.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    lse = (np.log(np.exp(logits - top).sum(axis=1, keepdims=True)) + top)[:, 0]
    loss = weights * (lse - logits[np.arange(len(labels)), labels])
    ids = np.where(weights != 0, logits.argmax(axis=1), -1)
    return loss, ids


def assert_close(native, reference, rtol=2e-4, atol=2e-5):
    loss_n, ids_n, grads_n = native
    loss_r, ids_r, grads_r = reference
    np.testing.assert_allclose(loss_n, loss_r, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(ids_n, ids_r)
    for name, gn, gr in zip(["d_hidden", "d_table", "d_bias"], grads_n, grads_r):
        scale = max(1.0, float(np.abs(gr).max(initial=0.0)))
        np.testing.assert_allclose(gn, gr, rtol=rtol, atol=atol * scale, err_msg=name)


def test_native_library_is_built():
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 24), v=st.integers(37, 300), chunk_rows=st.sampled_from([0, 1, 3, 7, 16]),
       training=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_values_and_gradients_match_the_reference(n, d, v, chunk_rows, training, seed):
    inputs = make_inputs(np.random.RandomState(seed), n, d, v)
    native = run("native", *inputs, training=training, chunk_rows=chunk_rows)
    reference = run("reference", *inputs)
    assert_close(native, reference)
    loss, ids = numpy_reference(*inputs)
    np.testing.assert_allclose(native[0], loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(native[1], ids)


@pytest.mark.parametrize("training", [True, False])
def test_non_constant_upstream_gradient_is_exact(training):
    rng = np.random.RandomState(3)
    inputs = make_inputs(rng, 50, 16, 101)
    upstream = rng.randn(50).astype(np.float32)
    native = run("native", *inputs, upstream=upstream, training=training, chunk_rows=8)
    assert_close(native, run("reference", *inputs, upstream=upstream))


@pytest.mark.parametrize("training", [True, False])
def test_table_gradient_accumulated_by_slices_matches_the_reference(training, monkeypatch):
    """The float32 path when oneDNN cannot add the table product into the accumulator in place."""
    module = importlib.import_module("research.ops.masked_lm_loss")
    monkeypatch.setattr(module, "_accumulates_in_place", lambda matmul_dtype: False)
    monkeypatch.setattr(module, "_vocabulary_slices", lambda table: [(0, 10), (10, 57), (57, 101)])
    inputs = make_inputs(np.random.RandomState(6), 45, 12, 101, zero_fraction=0.2)
    assert_close(run("native", *inputs, training=training, chunk_rows=8), run("reference", *inputs))


def test_upstream_constant_over_weighted_rows_only_uses_the_fast_path_correctly():
    # Different upstream values on zero-weight rows do not matter: those rows have no gradient.
    rng = np.random.RandomState(4)
    inputs = make_inputs(rng, 30, 8, 64, zero_fraction=0.5)
    upstream = np.where(inputs[4] != 0, 0.25, rng.randn(30)).astype(np.float32)
    assert_close(run("native", *inputs, upstream=upstream), run("reference", *inputs, upstream=upstream))


@pytest.mark.parametrize("backend", ["native", "chunked"])
def test_gradient_matches_finite_differences(backend):
    rng = np.random.RandomState(5)
    hidden, table, bias, labels, weights = make_inputs(rng, 6, 5, 41)
    for position in range(3):
        def loss_of(x, position=position):
            args = [tf.constant(hidden), tf.constant(table), tf.constant(bias)]
            args[position] = x
            return tf.reduce_sum(ops.masked_lm_loss(*args, labels, weights, backend=backend, chunk_rows=4)[0])
        start = [hidden, table, bias][position]
        theoretical, numerical = tf.test.compute_gradient(loss_of, [tf.constant(start)], delta=1e-2)
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    inputs = make_inputs(np.random.RandomState(6), 0, 8, 50)
    loss, ids, (d_hidden, d_table, d_bias) = run(backend, *inputs)
    assert loss.shape == (0,) and ids.shape == (0,) and d_hidden.shape == (0, 8)
    assert not d_table.any() and not d_bias.any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_weights_give_zero_loss_and_exactly_zero_gradients(backend):
    hidden, table, bias, labels, _ = make_inputs(np.random.RandomState(7), 12, 8, 50)
    loss, ids, grads = run(backend, hidden, table, bias, labels, np.zeros(12, np.float32),
                           upstream=np.ones(12, np.float32))
    assert not loss.any()
    np.testing.assert_array_equal(ids, -1)
    for grad in grads:
        assert not grad.any()


def test_zero_weight_rows_do_not_change_anything_else():
    rng = np.random.RandomState(8)
    hidden, table, bias, labels, weights = make_inputs(rng, 20, 8, 70, zero_fraction=0.0)
    weights[::3] = 0.0
    full = run("native", hidden, table, bias, labels, weights, upstream=np.ones(20, np.float32))
    kept = weights != 0
    part = run("native", hidden[kept], table, bias, labels[kept], weights[kept],
               upstream=np.ones(kept.sum(), np.float32))
    np.testing.assert_array_equal(full[0][kept], part[0])
    np.testing.assert_array_equal(full[2][0][kept], part[2][0])
    assert not full[2][0][~kept].any()
    np.testing.assert_allclose(full[2][1], part[2][1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_huge_logits_stay_finite_and_match_the_reference(training):
    rng = np.random.RandomState(9)
    hidden, table, bias, labels, weights = make_inputs(rng, 24, 16, 130)
    hidden *= 1e4 / np.abs(hidden @ table.T).max()  # logits up to 1e4 in magnitude
    native = run("native", hidden, table, bias, labels, weights, training=training, chunk_rows=5)
    reference = run("reference", hidden, table, bias, labels, weights)
    for array in [native[0], *native[2]]:
        assert np.all(np.isfinite(array))
    assert_close(native, reference, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_16_bit_inputs_match_the_float32_reference_on_the_same_values(dtype):
    rng = np.random.RandomState(10)
    inputs = make_inputs(rng, 40, 32, 257)
    rounded = [tf.cast(tf.cast(x, dtype), tf.float32).numpy() for x in inputs[:3]] + list(inputs[3:])
    native = run("native", *inputs, dtype=dtype, chunk_rows=9)
    reference = run("reference", *rounded)
    np.testing.assert_allclose(native[0], reference[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(native[1], reference[1])
    for gn, gr in zip(native[2], reference[2]):  # gradients are rounded to the 16-bit dtype
        np.testing.assert_allclose(gn, gr, rtol=2e-2, atol=2e-2 * max(1.0, np.abs(gr).max()))


def test_mixed_dtypes_are_computed_in_float32():
    rng = np.random.RandomState(11)
    hidden, table, bias, labels, weights = make_inputs(rng, 10, 8, 40)
    loss, _ = ops.masked_lm_loss(tf.cast(hidden, tf.bfloat16), table, bias, labels, weights, backend="native")
    rounded = tf.cast(tf.cast(hidden, tf.bfloat16), tf.float32).numpy()
    np.testing.assert_allclose(loss.numpy(), numpy_reference(rounded, table, bias, labels, weights)[0], rtol=1e-4)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_bfloat16_matmuls_native_matches_reference_and_stays_near_float32(dtype, training):
    rng = np.random.RandomState(12)
    inputs = make_inputs(rng, 70, 48, 301, scale=0.3)
    native = run("native", *inputs, dtype=dtype, chunk_rows=16, training=training, matmul_dtype=tf.bfloat16)
    reference = run("reference", *inputs, dtype=dtype, matmul_dtype=tf.bfloat16)
    exact = run("reference", *inputs, dtype=dtype)
    # Logits, and G in the backward products, are rounded to bfloat16 (8 significant bits).
    for other, tolerance in ((reference, 2e-2), (exact, 5e-2)):
        np.testing.assert_allclose(native[0], other[0], rtol=tolerance, atol=tolerance)
        for gn, go in zip(native[2], other[2]):
            np.testing.assert_allclose(gn, go, rtol=tolerance, atol=tolerance * max(1.0, np.abs(go).max()))
    assert np.abs(native[2][1] - exact[2][1]).max() > 0  # the products did run in bfloat16


def test_matmul_dtype_is_checked():
    hidden, table, bias, labels, weights = make_inputs(np.random.RandomState(13), 4, 8, 20)
    with pytest.raises(ValueError, match="matmul_dtype must be one of .*got float16"):
        ops.masked_lm_loss(hidden, table, bias, labels, weights, matmul_dtype=tf.float16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [40, -1])
def test_labels_out_of_range_name_row_and_value(backend, bad):
    hidden, table, bias, labels, weights = make_inputs(np.random.RandomState(12), 6, 4, 40)
    labels[2] = bad
    named = rf"(?s)row\W+2\W.*value\W+{bad}|labels\[2\] = {bad} is outside"  # reference | native
    with pytest.raises(tf.errors.InvalidArgumentError, match=named):
        ops.masked_lm_loss(hidden, table, bias, labels, weights, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_argmax_ties_pick_the_lowest_index(backend):
    v = 64
    bias = np.zeros(v, np.float32)
    table = np.zeros((v, 4), np.float32)
    weights = np.ones(4, np.float32)
    hidden = np.zeros((4, 4), np.float32)
    labels = np.zeros(4, np.int32)
    bias[[21, 40, 5 + 32]] = 3.0  # lanes 5, 8, 5 of 16-wide vectors
    bias[[9, 25]] = 2.0
    _, ids = ops.masked_lm_loss(hidden, table, bias, labels, weights, backend=backend)
    np.testing.assert_array_equal(ids.numpy(), 21)
    _, ids = ops.masked_lm_loss(hidden, table, np.zeros(v, np.float32), labels, weights, backend=backend)
    np.testing.assert_array_equal(ids.numpy(), 0)


def test_inside_a_tf_function_native_matches_reference():
    inputs = make_inputs(np.random.RandomState(13), 33, 8, 90)
    upstream = np.random.RandomState(14).randn(33).astype(np.float32)

    def step(backend, upstream):
        @tf.function
        def f(hidden, table, bias):
            with tf.GradientTape() as tape:
                tape.watch([hidden, table, bias])
                loss, ids = ops.masked_lm_loss(hidden, table, bias, inputs[3], inputs[4], backend=backend, chunk_rows=4)
                total = tf.reduce_sum(loss * upstream)
            return loss, ids, tape.gradient(total, [hidden, table, bias])
        loss, ids, grads = f(*[tf.constant(x) for x in inputs[:3]])
        return loss.numpy(), ids.numpy(), [g.numpy() for g in grads]

    for up in (np.full(33, 0.5, np.float32), upstream):  # the constant fast path and the recomputing one
        assert_close(step("native", up), step("reference", up))


def test_xla_auto_runs_without_the_kernel_and_native_is_refused():
    inputs = make_inputs(np.random.RandomState(15), 9, 8, 50)

    @tf.function(jit_compile=True)
    def auto(hidden, table, bias):
        return ops.masked_lm_loss(hidden, table, bias, inputs[3], inputs[4])

    loss, ids = auto(*[tf.constant(x) for x in inputs[:3]])
    expected_loss, expected_ids = numpy_reference(*inputs)
    np.testing.assert_allclose(loss.numpy(), expected_loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(ids.numpy(), expected_ids)

    @tf.function(jit_compile=True)
    def native(hidden, table, bias):
        return ops.masked_lm_loss(hidden, table, bias, inputs[3], inputs[4], backend="native")

    with pytest.raises(ValueError, match="XLA"):
        native(*[tf.constant(x) for x in inputs[:3]])


@pytest.mark.parametrize("in_place", [True, False], ids=["in_place_product", "by_slices"])
def test_native_training_step_holds_only_its_gradients_and_one_chunk(in_place, monkeypatch):
    """Guards the ways the head once held ~V x D more than it needs: a zero table accumulator folded into
    a constant by Grappler (whose buffer cannot be updated in place, so the first chunk copied it), the
    per-slice table products of a chunk all alive at once, and (in place) a [V, D] product beside the
    accumulator when oneDNN does not add it into the accumulator's buffer."""
    module = importlib.import_module("research.ops.masked_lm_loss")
    if in_place and not module._accumulates_in_place(tf.float32):
        pytest.fail("oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0?): the in-place table accumulation cannot run")
    monkeypatch.setattr(module, "_accumulates_in_place", lambda matmul_dtype: in_place)
    n, d, v, rows = 512, 512, 30522, 64
    hidden, table, bias, labels, _ = make_inputs(np.random.RandomState(0), n, d, v)
    hidden, table, bias = [tf.constant(x) for x in (hidden, table, bias)]
    weights = tf.ones([n])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch([hidden, table, bias])
            loss, _ = ops.masked_lm_loss(hidden, table, bias, labels, weights, backend="native", chunk_rows=rows)
            total = tf.reduce_sum(loss) / tf.reduce_sum(weights)
        return tape.gradient(total, [hidden, table, bias])

    step()
    peak = peak_live_tensor_bytes(lambda: [g.numpy() for g in step()])
    needed = 4 * (n * d + v * d + v  # the three gradients
                  + rows * v  # one chunk of logits, overwritten by its softmax gradient
                  + rows * d)  # the chunk's hidden-state gradient
    if not in_place:
        slice_rows = -(-v // len(module._vocabulary_slices(table)))
        needed += 4 * slice_rows * (d + rows)  # one slice of the table product and of the chunk's gradient
    assert peak <= 1.1 * needed, (peak / 2**20, needed / 2**20)
