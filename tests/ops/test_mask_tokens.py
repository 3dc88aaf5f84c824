"""Research>MaskTokens: the native kernel and the reference twin against the contract and each other."""
import numpy as np
import pytest
import tensorflow as tf

from research import ops
from research.ops._loader import LIBRARY

VOCAB = 1000
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, UNK, CLS, SEP]
EXCLUDED = set(SPECIALS) | {MASK}
BACKENDS = ["native", "reference"]
KWARGS = dict(vocab_size=VOCAB, mask_token_id=MASK, special_token_ids=SPECIALS)


def make_batch(rng, batch, seq_len, vocab=VOCAB):
    """int32 [batch, seq_len]: [CLS] tokens [SEP] then padding, random real lengths, a few stray specials."""
    ids = np.zeros([batch, seq_len], np.int32)
    for row in range(batch):
        length = rng.randint(0, seq_len + 1)
        ids[row, :length] = rng.randint(5, vocab, size=length)
        if length >= 2:
            ids[row, 0], ids[row, length - 1] = CLS, SEP
        if length > 4:
            ids[row, rng.randint(1, length - 1)] = rng.choice([UNK, MASK])
    return ids


def expected_count(ids_row, rate, max_predictions):
    candidates = sum(1 for token in ids_row if token not in EXCLUDED)
    if candidates == 0:
        return 0
    return min(max_predictions, max(1, int(np.floor(np.float64(np.float32(rate)) * candidates + 0.5))))


def run(ids, seed, backend, max_predictions=20, word_starts=None, **kwargs):
    out = ops.mask_tokens(ids, seed, max_predictions_per_seq=max_predictions, word_starts=word_starts,
                          backend=backend, **{**KWARGS, **kwargs})
    return {name: value.numpy() for name, value in out.items()}


def test_native_library_is_built():
    assert LIBRARY.get() is not None, LIBRARY.unavailable_reason


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", [0.15, 0.5, 1.0])
def test_counts_positions_and_ids_follow_the_contract(backend, rate):
    rng = np.random.RandomState(0)
    ids = make_batch(rng, 64, 48)
    out = run(ids, [3, 7], backend, max_predictions=20, mask_rate=rate)
    for row in range(ids.shape[0]):
        count = int(out["masked_lm_weights"][row].sum())
        assert count == expected_count(ids[row], rate, 20)
        positions = out["masked_lm_positions"][row, :count]
        assert np.all(np.diff(positions) > 0), positions  # ascending and unique
        assert all(ids[row, p] not in EXCLUDED for p in positions)
        np.testing.assert_array_equal(out["masked_lm_ids"][row, :count], ids[row, positions])
        np.testing.assert_array_equal(out["masked_lm_weights"][row, :count], 1.0)
        for name in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
            assert not np.any(out[name][row, count:]), (name, out[name][row])
        untouched = np.ones(ids.shape[1], bool)
        untouched[positions] = False
        np.testing.assert_array_equal(out["input_word_ids"][row, untouched], ids[row, untouched])


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_words_are_all_or_none(backend):
    rng = np.random.RandomState(1)
    ids = make_batch(rng, 64, 64)
    word_starts = rng.rand(*ids.shape) < 0.4
    out = run(ids, [5, 1], backend, max_predictions=12, word_starts=word_starts, mask_rate=0.3)
    for row in range(ids.shape[0]):
        words = _words(ids[row], word_starts[row])
        count = int(out["masked_lm_weights"][row].sum())
        chosen = set(out["masked_lm_positions"][row, :count].tolist())
        assert count <= 12
        for word in words:
            overlap = len(chosen & set(word))
            assert overlap in (0, len(word)), (row, word, sorted(chosen))
        wanted = expected_count(ids[row], 0.3, 12)
        # Greedy closeness: no unchosen word would have brought the count strictly closer to `wanted`.
        for word in words:
            if not chosen & set(word) and count < wanted:
                grown = count + len(word)
                assert grown > 12 or abs(grown - wanted) >= wanted - count, (row, word, count, wanted)


def _words(ids_row, starts_row):
    words, current = [], None
    for position, token in enumerate(ids_row):
        if token in EXCLUDED:
            current = None
            continue
        if starts_row[position] or current is None:
            current = []
            words.append(current)
        current.append(position)
    return words


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_token_words_meet_the_exact_count(backend):
    rng = np.random.RandomState(2)
    ids = make_batch(rng, 32, 40)
    out = run(ids, [9, 9], backend, word_starts=np.ones(ids.shape, bool))
    counts = out["masked_lm_weights"].sum(axis=1)
    np.testing.assert_array_equal(counts, [expected_count(row, 0.15, 20) for row in ids])


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_result_new_seed_new_result(backend):
    ids = make_batch(np.random.RandomState(3), 16, 64)
    first, again, other = run(ids, [1, 2], backend), run(ids, [1, 2], backend), run(ids, [1, 3], backend)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["masked_lm_positions"], other["masked_lm_positions"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_replacement_rates_pass_a_chi_square_test(backend):
    """80% [MASK], 10% random, 10% unchanged over >= 100k selections (df = 2, p = 0.001)."""
    rng = np.random.RandomState(4)
    ids = rng.randint(5, VOCAB, size=[1024, 128]).astype(np.int32)
    outcomes = np.zeros(3)
    random_ids = []
    for step in range(6):
        out = run(ids, [11, step], backend, max_predictions=20)
        real = out["masked_lm_weights"] > 0
        rows = np.nonzero(real)[0]
        new = out["input_word_ids"][rows, out["masked_lm_positions"][real]]
        original = out["masked_lm_ids"][real]
        is_mask = new == MASK
        is_random = (~is_mask) & (new != original)
        outcomes += [is_mask.sum(), is_random.sum(), (~is_mask & ~is_random).sum()]
        random_ids.append(new[is_random])
    total = outcomes.sum()
    assert total >= 100_000
    allowed = VOCAB - len(EXCLUDED)
    expected = total * np.array([0.8, 0.1 * (1 - 1 / allowed), 0.1 + 0.1 / allowed])
    chi_square = ((outcomes - expected) ** 2 / expected).sum()
    assert chi_square < 13.816, (outcomes, expected, chi_square)
    random_ids = np.concatenate(random_ids)
    assert not set(random_ids.tolist()) & EXCLUDED
    assert random_ids.min() >= 5 and random_ids.max() < VOCAB


@pytest.mark.parametrize("whole_word", [False, True])
def test_native_and_reference_agree_in_distribution(whole_word):
    """Selection frequency per position over many seeds: a two-sample chi-square test (p = 0.001)."""
    rng = np.random.RandomState(5)
    ids = np.tile(make_batch(rng, 1, 32), [256, 1])
    ids[:, 0], ids[:, 1:31] = CLS, rng.randint(5, VOCAB, size=30)
    ids[:, 31] = SEP
    word_starts = np.tile(rng.rand(1, 32) < 0.5, [256, 1]) if whole_word else None
    counts = {}
    for backend in BACKENDS:
        frequency = np.zeros(32)
        for step in range(8):
            out = run(ids, [21, step], backend, max_predictions=6, word_starts=word_starts, mask_rate=0.15)
            np.add.at(frequency, out["masked_lm_positions"][out["masked_lm_weights"] > 0], 1)
        counts[backend] = frequency
    a, b = counts["native"], counts["reference"]
    np.testing.assert_array_equal(a.sum(), b.sum()) if not whole_word else None
    used = (a + b) > 0
    chi_square = ((a[used] - b[used]) ** 2 / (a[used] + b[used])).sum()  # equal-size samples: sum (a-b)^2/(a+b), df = used-1
    df = used.sum() - 1
    critical = {29: 58.301, 30: 59.703}.get(df, df + 3.3 * np.sqrt(2 * df) + 3)
    assert chi_square < critical, (chi_square, df, a, b)
    if not whole_word:  # uniform over the 30 candidates
        expected = a.sum() / 30
        assert (((a[1:31] - expected) ** 2) / expected).sum() < 58.301


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_shapes(backend):
    empty_batch = run(np.zeros([0, 8], np.int32), [1, 1], backend, max_predictions=3)
    assert empty_batch["masked_lm_positions"].shape == (0, 3)
    no_predictions = run(make_batch(np.random.RandomState(6), 4, 8), [1, 1], backend, max_predictions=0)
    assert no_predictions["masked_lm_ids"].shape == (4, 0)
    only_specials = run(np.array([[CLS, SEP, PAD, PAD]], np.int32), [1, 1], backend, max_predictions=3)
    assert only_specials["masked_lm_weights"].sum() == 0
    empty_rows = run(np.zeros([2, 0], np.int32), [1, 1], backend, max_predictions=2)
    assert empty_rows["input_word_ids"].shape == (2, 0)


BAD_ARGUMENTS = [
    (dict(mask_rate=1.5), "mask_rate must be in [0, 1], got 1.5"),
    (dict(mask_rate=-0.1), "mask_rate must be in [0, 1]"),
    (dict(mask_prob=1.2), "mask_prob must be in [0, 1], got 1.2"),
    (dict(random_prob=-1.0), "random_prob must be in [0, 1], got -1"),
    (dict(mask_prob=0.7, random_prob=0.5), "mask_prob + random_prob must be <= 1"),
    (dict(mask_token_id=VOCAB), f"mask_token_id {VOCAB} is outside [0, vocab_size={VOCAB})"),
    (dict(mask_token_id=-1), "mask_token_id -1 is outside"),
    (dict(special_token_ids=[PAD, MASK]), "special_token_ids[1] = 4 is the mask_token_id"),
    (dict(special_token_ids=[PAD, 5000]), "special_token_ids[1] = 5000 is outside"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("arguments,message", BAD_ARGUMENTS)
def test_bad_arguments_name_the_value(backend, arguments, message):
    ids = make_batch(np.random.RandomState(7), 2, 8)
    with pytest.raises(tf.errors.InvalidArgumentError, match=_escape(message)):
        run(ids, [1, 1], backend, **arguments)


@pytest.mark.parametrize("arguments,message", BAD_ARGUMENTS[:5])
def test_kernel_checks_attributes_itself(arguments, message):
    """The raw op, without the Python wrapper's checks, refuses the same values."""
    attributes = dict(vocab_size=VOCAB, mask_token_id=MASK, special_token_ids=SPECIALS,
                      max_predictions_per_seq=3, mask_rate=0.15, mask_prob=0.8, random_prob=0.1)
    attributes.update(arguments)
    with pytest.raises(tf.errors.InvalidArgumentError, match=_escape(message.split(", got")[0])):
        LIBRARY.get().research_mask_tokens(tf.constant([[5, 6]]), tf.constant([1, 1], tf.int64), [], **attributes)


def _escape(text):
    import re
    return re.escape(text)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad_id", [-3, VOCAB, VOCAB + 17])
def test_out_of_range_ids_are_named_with_their_place(backend, bad_id):
    ids = make_batch(np.random.RandomState(8), 3, 6)
    ids[1, 4] = bad_id
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        run(ids, [1, 1], backend)
    message = str(error.value)
    assert str(bad_id) in message and "vocab_size=1000" in message
    if backend == "native":
        assert f"token_ids[1, 4] = {bad_id}" in message


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [[8], [2, 3, 4]])
def test_rank_other_than_two_is_refused(backend, shape):
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank 2"):
        run(np.full(shape, 7, np.int32), [1, 1], backend)


def test_native_kernel_refuses_wrong_rank_in_a_graph_without_static_shape():
    @tf.function(input_signature=[tf.TensorSpec(None, tf.int32)])
    def masked(ids):
        return LIBRARY.get().research_mask_tokens(ids, tf.constant([1, 1], tf.int64), [], vocab_size=VOCAB,
                                                  mask_token_id=MASK, max_predictions_per_seq=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank 2"):
        masked(tf.constant([7, 8, 9]))


def test_mask_tokens_has_no_gradient():
    from tensorflow.python.framework import ops as tf_ops
    LIBRARY.get()
    assert tf_ops.gradient_registry.lookup("Research>MaskTokens") is None


def test_auto_uses_reference_under_jit_and_native_refuses_it():
    ids = make_batch(np.random.RandomState(9), 4, 16)

    @tf.function(jit_compile=True)
    def auto(x):
        return ops.mask_tokens(x, [1, 2], max_predictions_per_seq=4, **KWARGS)

    out = auto(tf.constant(ids))
    np.testing.assert_array_equal(out["masked_lm_weights"].numpy().sum(1), [expected_count(r, 0.15, 4) for r in ids])

    @tf.function(jit_compile=True)
    def native(x):
        return ops.mask_tokens(x, [1, 2], max_predictions_per_seq=4, backend="native", **KWARGS)

    with pytest.raises(ValueError, match="XLA"):
        native(tf.constant(ids))


def test_works_inside_tf_data_with_a_seed_per_step():
    ids = make_batch(np.random.RandomState(10), 8, 16)
    dataset = tf.data.Dataset.from_tensors(ids).repeat(3).enumerate().map(
        lambda step, batch: ops.mask_tokens(batch, tf.stack([tf.constant(5, tf.int64), step]),
                                            max_predictions_per_seq=4, **KWARGS))
    batches = [batch["masked_lm_positions"].numpy() for batch in dataset]
    assert not np.array_equal(batches[0], batches[1])
    direct = run(ids, [5, 2], "native", max_predictions=4)
    np.testing.assert_array_equal(batches[2], direct["masked_lm_positions"])


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="'fast'"):
        run(make_batch(np.random.RandomState(11), 1, 4), [1, 1], "fast")
