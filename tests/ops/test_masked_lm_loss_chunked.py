"""research.ops.masked_lm_loss, backend='chunked' (plain TensorFlow ops): equal to the explicit-logits
reference in loss, ids and all three gradients, eagerly, in graphs and under XLA, where it is what
`auto` runs and where it must not allocate anything of the [N, V] logits' size."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from research import ops
from research.core.xla_memory import compiled_memory
from research.ops import masked_lm_loss_chunked
from test_masked_lm_loss import assert_close, make_inputs, numpy_reference, run


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 24), v=st.integers(37, 300), chunk_rows=st.sampled_from([0, 1, 3, 7, 16]),
       training=st.booleans(), constant_upstream=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_values_and_gradients_match_the_reference(n, d, v, chunk_rows, training, constant_upstream, seed):
    rng = np.random.RandomState(seed)
    inputs = make_inputs(rng, n, d, v)
    upstream = None if constant_upstream else rng.randn(n).astype(np.float32)
    chunked = run("chunked", *inputs, training=training, chunk_rows=chunk_rows, upstream=upstream)
    assert_close(chunked, run("reference", *inputs, upstream=upstream))
    loss, ids = numpy_reference(*inputs)
    np.testing.assert_allclose(chunked[0], loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(chunked[1], ids)


def assert_16_bit_gradients_close(got, expected):
    """Each gradient (float32 arrays) within 2e-2, absolute tolerance relative to its largest value."""
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=2e-2, atol=2e-2 * max(1.0, np.abs(e).max()))


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_16_bit_inputs_match_the_float32_reference_on_the_same_values(dtype):
    inputs = make_inputs(np.random.RandomState(10), 40, 32, 257)
    rounded = [tf.cast(tf.cast(x, dtype), tf.float32).numpy() for x in inputs[:3]] + list(inputs[3:])
    chunked = run("chunked", *inputs, dtype=dtype, chunk_rows=9)
    reference = run("reference", *rounded)
    np.testing.assert_allclose(chunked[0], reference[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(chunked[1], reference[1])
    assert_16_bit_gradients_close(chunked[2], reference[2])  # gradients are rounded to the 16-bit dtype


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_bfloat16_matmuls_match_the_reference(dtype, training):
    inputs = make_inputs(np.random.RandomState(12), 70, 48, 301, scale=0.3)
    chunked = run("chunked", *inputs, dtype=dtype, chunk_rows=16, training=training, matmul_dtype=tf.bfloat16)
    reference = run("reference", *inputs, dtype=dtype, matmul_dtype=tf.bfloat16)
    np.testing.assert_allclose(chunked[0], reference[0], rtol=2e-2, atol=2e-2)
    assert_16_bit_gradients_close(chunked[2], reference[2])
    assert np.abs(chunked[2][1] - run("reference", *inputs, dtype=dtype)[2][1]).max() > 0  # bfloat16 products


def _step(backend, inputs, upstream, jit_compile, chunk_rows=8, matmul_dtype=tf.float32):
    """A tf.function returning (loss, ids, [d_hidden, d_table, d_bias]) of sum(loss * upstream)."""
    labels, weights = inputs[3], inputs[4]

    @tf.function(jit_compile=jit_compile)
    def step(hidden, table, bias):
        with tf.GradientTape() as tape:
            tape.watch([hidden, table, bias])
            loss, ids = ops.masked_lm_loss(hidden, table, bias, labels, weights, backend=backend,
                                           chunk_rows=chunk_rows, matmul_dtype=matmul_dtype)
            total = tf.reduce_sum(loss * upstream)
        return loss, ids, tape.gradient(total, [hidden, table, bias])
    return step


def _values(step, inputs):
    loss, ids, grads = step(*[tf.constant(x) for x in inputs[:3]])
    return loss.numpy(), ids.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("constant_upstream", [True, False])
def test_in_graphs_and_under_xla_auto_matches_the_reference(jit_compile, constant_upstream):
    """Under XLA `auto` is the chunked head; in a plain graph here it is the kernel, so 'chunked' is asked."""
    rng = np.random.RandomState(13)
    inputs = make_inputs(rng, 44, 8, 90)  # 44 rows in chunks of 8: the last chunk is padded
    upstream = np.full(44, 0.5, np.float32) if constant_upstream else rng.randn(44).astype(np.float32)
    backend = "auto" if jit_compile else "chunked"
    got = _values(_step(backend, inputs, upstream, jit_compile), inputs)
    assert_close(got, _values(_step("reference", inputs, upstream, False), inputs))


def test_auto_under_xla_compiles_the_chunked_loop_and_no_logits():
    inputs = make_inputs(np.random.RandomState(14), 64, 8, 500)
    step = _step("auto", inputs, np.ones(64, np.float32), True, chunk_rows=16)
    hlo = step.experimental_get_compiler_ir(*[tf.constant(x) for x in inputs[:3]])(stage="hlo")
    assert "while" in hlo and "f32[16,500]" in hlo
    assert "[64,500]" not in hlo  # no [N, V] tensor anywhere in the program
    reference = _step("reference", inputs, np.ones(64, np.float32), True)
    assert "[64,500]" in reference.experimental_get_compiler_ir(*[tf.constant(x) for x in inputs[:3]])(stage="hlo")


@pytest.mark.parametrize("matmul_dtype", [tf.float32, tf.bfloat16])
def test_xla_training_step_allocates_its_gradients_and_a_few_chunks(matmul_dtype):
    """XLA's buffer assignment of a whole training step of the head (compiled, not run): the outputs (the
    three gradients) plus a copy of the hidden-state gradient and a few [rows, V] chunks, far below the
    reference's [N, V] logits."""
    n, d, v, rows = 2048, 64, 30522, 128
    inputs = make_inputs(np.random.RandomState(0), n, d, v, zero_fraction=0.0)
    args = [tf.constant(x) for x in inputs[:3]]
    upstream = np.full(n, 1.0 / n, np.float32)
    memory = compiled_memory(_step("auto", inputs, upstream, True, chunk_rows=rows, matmul_dtype=matmul_dtype), *args)
    gradients = 4 * (n * d + v * d + v)
    assert memory.outputs <= 1.01 * (gradients + 4 * n + 4 * n)  # + the loss and the ids
    budget = 4 * n * d + 3 * 4 * rows * v + 4 * v * d  # + one [V, D] product a chunk
    assert memory.temporaries <= budget, (memory, budget)
    logits = 4 * n * v
    assert memory.allocated <= 0.15 * logits * 2  # at this small D the gradients weigh more than at D = 768
    reference = compiled_memory(_step("reference", inputs, upstream, True, matmul_dtype=matmul_dtype), *args)
    assert reference.temporaries >= logits  # what the chunked head saves


def test_chunk_rows_prefer_a_divisor_of_the_rows():
    assert masked_lm_loss_chunked.chunk_rows_for(19456, 30522) == 304
    assert masked_lm_loss_chunked.chunk_rows_for(100, 30522) == 100  # fewer rows than a chunk: one chunk
    assert masked_lm_loss_chunked.chunk_rows_for(None, 30522) == (36 << 20) // (4 * 30522)
    assert masked_lm_loss_chunked.chunk_rows_for(1009, 30522, chunk_rows=64) == 64  # a prime: padded
    assert masked_lm_loss_chunked.chunk_rows_for(1000, 30522, chunk_rows=64) == 50


def test_unknown_backend_is_named():
    hidden, table, bias, labels, weights = make_inputs(np.random.RandomState(1), 4, 8, 20)
    with pytest.raises(ValueError, match=r"backend must be one of .*'chunked'.*got 'xla'"):
        ops.masked_lm_loss(hidden, table, bias, labels, weights, backend="xla")


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_under_xla_bfloat16_matmuls_match_the_reference(dtype):
    """The softmax XLA compiles (written out as reductions) against the reference, with bfloat16 products."""
    rng = np.random.RandomState(15)
    inputs = make_inputs(rng, 70, 48, 301, scale=0.3)
    upstream = rng.randn(70).astype(np.float32)  # not one constant: the recomputing pass runs too
    args = [tf.constant(x, dtype=dtype) for x in inputs[:3]]
    loss, ids, grads = _step("auto", inputs, upstream, True, chunk_rows=16, matmul_dtype=tf.bfloat16)(*args)
    reference = run("reference", *inputs, dtype=dtype, matmul_dtype=tf.bfloat16, upstream=upstream)
    np.testing.assert_allclose(loss.numpy(), reference[0], rtol=2e-2, atol=2e-2)
    assert_16_bit_gradients_close([tf.cast(g, tf.float32).numpy() for g in grads], reference[2])
    assert ids.shape == (70,) and np.all(ids[inputs[4] == 0] == -1)
