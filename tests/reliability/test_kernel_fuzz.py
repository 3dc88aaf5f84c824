"""Hypothesis fuzzing of the native kernels against their reference twins (shapes incl. zero-sized,
extreme values, every dtype): no crash, and native == reference (exact for gather, within tolerance
for the loss and its gradients, by contract for masking, whose random draws differ by design).
Also run under AddressSanitizer by tests/reliability/run_asan.sh.
"""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from research import ops

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
DTYPES = [tf.float32, tf.float16, tf.bfloat16]
SPECIAL = (0, 1, 2, 3)


@st.composite
def gather_case(draw):
    batch, seq_len, hidden, width = (draw(st.integers(0, 4)), draw(st.integers(1, 9)), draw(st.integers(0, 5)),
                                     draw(st.integers(0, 6)))
    scale = draw(st.sampled_from([1.0, 1e-30, 3e38, 6e4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    sequence = (rng.standard_normal((batch, seq_len, hidden)) * scale).astype(np.float32)
    positions = rng.integers(0, seq_len, size=(batch, width)).astype(np.int32)
    return sequence, positions, draw(st.sampled_from(DTYPES))


@FUZZ
@given(gather_case())
@example((np.random.default_rng(0).standard_normal((3, 1, 4)).astype(np.float32), np.zeros((3, 6), np.int32),
          tf.bfloat16))  # six duplicates: 16-bit sums in the 16-bit type round differently (found by fuzzing)
def test_gather_positions_native_equals_reference_with_gradients(case):
    sequence, positions, dtype = case
    sequence = tf.cast(sequence, dtype)
    if positions.size == 0:
        # Known: the reference twin's gradient (TF's tf.gather(batch_dims=1) -> UnsortedSegmentSum) raises
        # InvalidArgumentError on a zero-sized output; the native kernel returns the zero gradient.
        with tf.GradientTape() as tape:
            tape.watch(sequence)
            out = ops.gather_positions(sequence, positions, backend="native")
            loss = tf.reduce_sum(tf.cast(out, tf.float32))
        assert out.shape == (*positions.shape, sequence.shape[2])
        np.testing.assert_array_equal(tape.gradient(loss, sequence).numpy(), np.zeros(sequence.shape))
        return
    # Duplicate positions add their gradients. The native kernel adds 16-bit ones in float32 and rounds
    # once (its contract); TF's reference adds in the 16-bit type, rounding at every step (352 against
    # the exact 354 for six bfloat16 gradients of 49..69). So the reference runs in float32 and its
    # gradient is rounded to `dtype` once; the upstream gradients are small integers, whose float32 sums
    # are exact, so the comparison stays exact.
    results = {}
    for backend, compute_dtype in (("native", dtype), ("reference", tf.float32)):
        values = tf.cast(sequence, compute_dtype)
        with tf.GradientTape() as tape:
            tape.watch(values)
            out = ops.gather_positions(values, positions, backend=backend)
            upstream = tf.cast(tf.cast(tf.reshape(tf.range(tf.size(out)), tf.shape(out)), dtype), compute_dtype)
            loss = tf.reduce_sum(tf.cast(out * upstream, tf.float32))
        gradient = tf.cast(tape.gradient(loss, values), dtype)
        results[backend] = (tf.cast(out, dtype).numpy(), gradient.numpy())
    np.testing.assert_array_equal(results["native"][0], results["reference"][0])
    np.testing.assert_array_equal(results["native"][1], results["reference"][1])


@st.composite
def mask_case(draw):
    batch, seq_len = draw(st.integers(0, 5)), draw(st.integers(0, 24))
    vocab = draw(st.integers(6, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    ids = rng.integers(0, vocab, size=(batch, seq_len)).astype(np.int32)
    rates = draw(st.tuples(st.sampled_from([0.0, 0.15, 1.0]), st.sampled_from([0.0, 0.8, 1.0])))
    random_prob = draw(st.sampled_from([0.0, min(0.1, 1.0 - rates[1]), 1.0 - rates[1]]))
    seed = draw(st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1)))
    return ids, vocab, draw(st.integers(0, 8)), rates[0], rates[1], random_prob, seed


def _check_masking_contract(ids, vocab, predictions, out):
    positions, labels = out["masked_lm_positions"].numpy(), out["masked_lm_ids"].numpy()
    weights, masked = out["masked_lm_weights"].numpy(), out["input_word_ids"].numpy()
    assert positions.shape == labels.shape == weights.shape == (ids.shape[0], predictions)
    assert masked.shape == ids.shape and np.all((masked >= 0) & (masked < vocab))
    for row in range(ids.shape[0]):
        real = weights[row] > 0
        chosen = positions[row][real]
        assert np.all(np.diff(chosen) > 0) and np.all(weights[row][~real] == 0)
        assert np.all(~np.isin(ids[row][chosen], SPECIAL))
        np.testing.assert_array_equal(labels[row][real], ids[row][chosen])
        untouched = np.setdiff1d(np.arange(ids.shape[1]), chosen)
        np.testing.assert_array_equal(masked[row][untouched], ids[row][untouched])


@FUZZ
@given(mask_case())
def test_mask_tokens_native_and_reference_both_keep_the_contract(case):
    ids, vocab, predictions, mask_rate, mask_prob, random_prob, seed = case
    counts = {}
    for backend in ("native", "reference"):
        out = ops.mask_tokens(ids, tf.constant(seed, tf.int64), vocab_size=vocab, mask_token_id=4,
                              special_token_ids=SPECIAL, max_predictions_per_seq=predictions, mask_rate=mask_rate,
                              mask_prob=mask_prob, random_prob=random_prob, backend=backend)
        _check_masking_contract(ids, vocab, predictions, out)
        counts[backend] = out["masked_lm_weights"].numpy().sum(axis=1)
    np.testing.assert_array_equal(counts["native"], counts["reference"])  # how many: a deterministic function


@st.composite
def loss_case(draw):
    # width 0 (D = 0) is left to test_masked_lm_loss_native_of_zero_width (a bug this fuzzer found).
    rows, width, vocab = draw(st.integers(0, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 40))
    scale = draw(st.sampled_from([1.0, 30.0, 1e-20]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    hidden = (rng.standard_normal((rows, width)) * scale).astype(np.float32)
    table = rng.standard_normal((vocab, width)).astype(np.float32)
    bias = rng.standard_normal(vocab).astype(np.float32)
    labels = rng.integers(0, vocab, size=rows).astype(np.int32)
    weights = rng.choice([0.0, 1.0, 0.5], size=rows).astype(np.float32)
    return hidden, table, bias, labels, weights, draw(st.sampled_from(DTYPES)), draw(st.sampled_from([0, 1, 3]))


@FUZZ
@given(loss_case())
def test_masked_lm_loss_native_matches_reference_with_gradients(case):
    """Native on `dtype` inputs against the reference on the same values in float32, with
    tests/ops/test_masked_lm_loss.py's tolerances: the kernel computes in float32 whatever the input
    dtype, so the loss agrees to float32 rounding; gradients are rounded once to the input dtype."""
    hidden, table, bias, labels, weights, dtype, chunk_rows = case
    loss_tolerance, gradient_tolerance = (1e-4, 1e-4) if dtype == tf.float32 else (1e-4, 2e-2)
    inputs = [tf.cast(x, dtype) for x in (hidden, table, bias)]
    results = {}
    for backend, values in (("native", inputs), ("reference", [tf.cast(x, tf.float32) for x in inputs])):
        with tf.GradientTape() as tape:
            tape.watch(values)
            loss, predicted = ops.masked_lm_loss(*values, labels, weights, backend=backend, chunk_rows=chunk_rows)
            total = tf.reduce_sum(loss)
        gradients = tape.gradient(total, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        results[backend] = [loss.numpy(), predicted.numpy()] + [tf.cast(g, tf.float32).numpy() for g in gradients]
    native, reference = results["native"], results["reference"]
    assert np.all(np.isfinite(native[0])) and native[0].shape == (hidden.shape[0],)
    np.testing.assert_allclose(native[0], reference[0], rtol=loss_tolerance,
                               atol=loss_tolerance * (1 + np.abs(reference[0]).max(initial=0)))
    for got, expected in zip(native[2:], reference[2:]):
        np.testing.assert_allclose(got, expected, rtol=gradient_tolerance,
                                   atol=gradient_tolerance * (1 + np.abs(expected).max(initial=0)))
    if dtype == tf.float32 and hidden.size:
        logits = hidden @ table.T + bias
        top2 = np.sort(logits, axis=1)[:, -2:] if logits.shape[1] > 1 else None
        clear = np.ones(len(logits), bool) if top2 is None else (top2[:, 1] - top2[:, 0]) > 1e-3
        clear &= weights > 0  # the native kernel reports -1 for padding rows (weight 0)
        np.testing.assert_array_equal(native[1][clear], np.argmax(logits, axis=1)[clear])


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_masked_lm_loss_extreme_logits_stay_finite(backend):
    hidden = tf.constant([[1e4, -1e4], [-3e4, 3e4]], tf.float32)
    loss, _ = ops.masked_lm_loss(hidden, tf.eye(2), tf.zeros([2]), tf.constant([1, 1]), tf.ones([2]), backend=backend)
    np.testing.assert_allclose(loss.numpy(), [2e4, 0.0], rtol=1e-6)



def test_masked_lm_loss_native_of_zero_width():
    """Found by fuzzing: zero-width hidden states with some zero weights used to crash the native
    gradient (ScatterNd into an empty [N, 0]); now both backends agree (loss 0, no gradient)."""
    results = {}
    for backend in ("native", "reference"):
        inputs = [tf.zeros([2, 0]), tf.zeros([1, 0]), tf.zeros([1])]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss, _ = ops.masked_lm_loss(*inputs, tf.constant([0, 0]), tf.constant([1.0, 0.0]), backend=backend)
        gradients = tape.gradient(tf.reduce_sum(loss), inputs)
        results[backend] = (loss.numpy().tolist(), [None if g is None else tuple(g.shape) for g in gradients])
    assert results["native"] == results["reference"]
    assert results["native"][0] == [0.0, 0.0]