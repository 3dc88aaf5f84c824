"""research.data._native.select_documents against its definition in numpy."""
import numpy as np
import pytest

from research.data import _native


def numpy_select(num_sentences, sentence_lengths, tokens, selected):
    sentence_starts = np.concatenate([[0], np.cumsum(num_sentences)])
    token_starts = np.concatenate([[0], np.cumsum(sentence_lengths)])
    lengths = [sentence_lengths[sentence_starts[d]:sentence_starts[d + 1]] for d in selected]
    parts = [tokens[token_starts[sentence_starts[d]]:token_starts[sentence_starts[d + 1]]] for d in selected]
    return (num_sentences[selected], np.concatenate(lengths or [np.zeros(0, np.int32)]),
            np.concatenate(parts or [np.zeros(0, tokens.dtype)]))


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_equals_numpy_for_orders_subsets_and_repeats(dtype):
    rng = np.random.default_rng(0)
    num_sentences = rng.integers(0, 5, 50).astype(np.int32)
    sentence_lengths = rng.integers(0, 9, int(num_sentences.sum())).astype(np.int32)
    tokens = rng.integers(0, 60000, int(sentence_lengths.sum())).astype(dtype)
    for selected in (rng.permutation(50), rng.choice(50, 17), np.array([3, 3, 49, 0]), np.zeros(0)):
        selected = selected.astype(np.int64)
        got = _native.select_documents(num_sentences, sentence_lengths, tokens, selected)
        for got_array, expected in zip(got, numpy_select(num_sentences, sentence_lengths, tokens, selected)):
            assert got_array.dtype == expected.dtype
            np.testing.assert_array_equal(got_array, expected)


def test_bad_counts_and_indices_are_named():
    counts, lengths, tokens = np.array([1, 2], np.int32), np.array([2, 1, 1], np.int32), np.arange(4, dtype=np.int32)
    with pytest.raises(ValueError, match=r"selected\[1\] = 2 is not a document in \[0, 2\)"):
        _native.select_documents(counts, lengths, tokens, np.array([0, 2]))
    with pytest.raises(ValueError, match="adds up to 4 tokens, tokens has 3"):
        _native.select_documents(counts, lengths, tokens[:3], np.array([0]))
    with pytest.raises(ValueError, match="adds up to 3 sentences, sentence_lengths has 2"):
        _native.select_documents(counts, lengths[:2], tokens, np.array([0]))
    with pytest.raises(ValueError, match="sentence_lengths has a negative size"):
        _native.select_documents(counts, np.array([2, -1, 3], np.int32), tokens, np.array([0]))
    with pytest.raises(TypeError):
        _native.select_documents(counts, lengths, tokens.astype(np.int64), np.array([0]))
