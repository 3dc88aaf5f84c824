"""Tests of the packing core: the C++ packer and its Python twin agree exactly, and both keep the
invariants of their mode (research/data/packing.py describes the modes)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research.data.packing import SplitMix64, pack_examples

CLS, SEP, PAD = 2, 3, 0
MODES = ("full_sentences", "segment_pair", "next_sentence")


def flat_corpus(documents):
    """documents: list of documents, each a list of sentence lengths. Token i has id 5 + i, so
    every token tells its corpus position. Returns (token_ids, sentence_offsets, document_offsets)."""
    lengths = [n for doc in documents for n in doc]
    token_ids = 5 + np.arange(sum(lengths), dtype=np.int32)
    sentence_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    document_offsets = np.concatenate([[0], np.cumsum([len(d) for d in documents])]).astype(np.int64)
    return token_ids, sentence_offsets, document_offsets


def pack_both(corpus, seq_len, mode, seed=1, short_seq_prob=0.1):
    """Packs with both backends, asserts they agree exactly, returns the result."""
    native = pack_examples(*corpus, seq_len, mode, seed, short_seq_prob=short_seq_prob,
                           backend="native")
    python = pack_examples(*corpus, seq_len, mode, seed, short_seq_prob=short_seq_prob,
                           backend="python")
    assert native[1] == python[1]
    assert native[0].keys() == python[0].keys()
    for name in native[0]:
        assert native[0][name].dtype == python[0][name].dtype == np.int32, name
        np.testing.assert_array_equal(native[0][name], python[0][name], err_msg=name)
    return native


documents_strategy = st.lists(st.lists(st.integers(0, 12), max_size=6), max_size=8)


@settings(max_examples=1000, deadline=None)
@given(documents=documents_strategy, seq_len=st.integers(5, 24), mode=st.sampled_from(MODES),
       seed=st.integers(0, 2**64 - 1), short_seq_prob=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_native_equals_python(documents, seq_len, mode, seed, short_seq_prob):
    pack_both(flat_corpus(documents), seq_len, mode, seed, short_seq_prob)


def test_splitmix64_matches_the_reference_sequence():
    rng = SplitMix64(0)  # values of the reference implementation (Vigna, splitmix64.c) from seed 0
    assert [rng.next() for _ in range(3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                              0x06C45D188009454F]


def _rows(examples):
    """Yields (words, types, content_end) per example, checking CLS first and padding at the end."""
    seq_len = examples["input_word_ids"].shape[1]
    for words, types in zip(examples["input_word_ids"], examples["input_type_ids"]):
        assert words[0] == CLS
        nonpad = np.flatnonzero(words != PAD)
        end = nonpad[-1] + 1
        assert len(nonpad) == end, "padding only at the end"
        assert words[end - 1] == SEP
        assert not types[end:].any() and (words[end:] == PAD).all() and end <= seq_len
        yield words, types, end


def _document_of_token(documents):
    return np.repeat(np.arange(len(documents)), [sum(d) for d in documents])


@settings(max_examples=150, deadline=None)
@given(documents=documents_strategy, seq_len=st.integers(3, 24))
def test_full_sentences_invariants(documents, seq_len):
    corpus = flat_corpus(documents)
    examples, num_tokens = pack_both(corpus, seq_len, "full_sentences")
    token_ids, sentence_offsets, _ = corpus
    assert num_tokens == len(token_ids)
    assert not examples["input_type_ids"].any()
    packed, row_of_token, separators_before = [], [], []
    for row, (words, _, end) in enumerate(_rows(examples)):
        content = words[1:end - 1]
        assert len(content) > 0
        is_sep = content == SEP
        assert not is_sep[0] and not is_sep[-1] and not (is_sep[1:] & is_sep[:-1]).any()
        separators_before += (len(packed) + np.cumsum(~is_sep)[is_sep]).tolist()
        packed += content[~is_sep].tolist()
        row_of_token += [row] * int((~is_sep).sum())
    assert packed == token_ids.tolist(), "every token kept, in order"
    document = _document_of_token(documents)
    for position in separators_before:  # a separator sits exactly between two documents
        assert document[position - 1] != document[position]
    row_of_token = np.array(row_of_token, dtype=np.int64)
    for begin, end in zip(sentence_offsets[:-1], sentence_offsets[1:]):
        if 0 < end - begin <= seq_len - 2:  # a sentence that fits an example is never split
            assert len(set(row_of_token[begin:end])) == 1


@settings(max_examples=150, deadline=None)
@given(documents=documents_strategy, seq_len=st.integers(5, 24),
       mode=st.sampled_from(["segment_pair", "next_sentence"]), seed=st.integers(0, 2**64 - 1))
def test_segment_pair_invariants(documents, seq_len, mode, seed):
    examples, num_tokens = pack_both(flat_corpus(documents), seq_len, mode, seed)
    document = _document_of_token(documents)
    labels = examples.get("next_sentence_labels", np.zeros(len(examples["input_word_ids"])))
    assert len(labels) == len(examples["input_word_ids"])
    counted, documents_seen = 0, set()
    for (words, types, end), label in zip(_rows(examples), labels):
        separators = np.flatnonzero(words[:end] == SEP)
        assert len(separators) == 2 and separators[1] == end - 1
        a, b = words[1:separators[0]] - 5, words[separators[0] + 1:end - 1] - 5
        assert len(a) >= 1 and len(a) + len(b) <= seq_len - 3
        assert not types[:separators[0] + 1].any() and types[separators[0] + 1:end].all()
        for segment in (a, b):  # each side is a contiguous run of the corpus
            assert (np.diff(segment) == 1).all()
        documents_seen.add(document[a[0]])
        assert len(set(document[a])) == 1
        if len(b):
            assert len(set(document[b])) == 1
            if label == 1:
                assert document[b[0]] != document[a[0]]
            else:
                assert document[b[0]] == document[a[0]] and b[0] > a[-1], "true continuation"
        counted += len(a) + len(b)
    assert counted == num_tokens
    assert documents_seen == {d for d, doc in enumerate(documents) if sum(doc)}


def test_next_sentence_labels_are_balanced():
    rng = np.random.default_rng(0)
    documents = [rng.integers(1, 30, size=rng.integers(2, 8)).tolist() for _ in range(300)]
    examples, _ = pack_both(flat_corpus(documents), 64, "next_sentence", seed=7)
    assert 0.4 < examples["next_sentence_labels"].mean() < 0.6


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("documents", [[], [[]], [[], [0, 0]], [[1]], [[1], [1], [1]],
                                       [[0, 1, 0], [], [1, 0]], [[40]], [[3, 40, 2], [50]]])
@pytest.mark.parametrize("seq_len", [3, 4, 5, 6, 128])
def test_edge_cases(documents, mode, seq_len):
    corpus = flat_corpus(documents)
    if mode != "full_sentences" and seq_len < 5:
        with pytest.raises(ValueError, match=f"seq_len={seq_len}"):
            pack_examples(*corpus, seq_len, mode, backend="native")
        return
    examples, num_tokens = pack_both(corpus, seq_len, mode)
    assert examples["input_word_ids"].shape[1:] == (seq_len,)
    if not len(corpus[0]):
        assert examples["input_word_ids"].shape == (0, seq_len)
        assert num_tokens == 0
    if mode == "full_sentences":
        assert num_tokens == len(corpus[0])
    if mode == "next_sentence":
        assert examples["next_sentence_labels"].shape == (len(examples["input_word_ids"]),)


def test_other_integer_dtypes_are_accepted():
    token_ids, sentence_offsets, document_offsets = flat_corpus([[3, 4], [5]])
    expected, _ = pack_examples(token_ids, sentence_offsets, document_offsets, 8)
    got, _ = pack_examples(token_ids.astype(np.int64).tolist(), sentence_offsets.astype(np.int32),
                           document_offsets.tolist(), 8)
    np.testing.assert_array_equal(got["input_word_ids"], expected["input_word_ids"])


GOOD = flat_corpus([[2, 3], [4]])  # 9 tokens, 3 sentences, 2 documents


@pytest.mark.parametrize("backend", ["native", "python"])
@pytest.mark.parametrize("change, message", [
    (dict(mode="bogus"), "unknown mode 'bogus'"),
    (dict(seq_len=2), "seq_len=2 is too small for mode 'full_sentences'"),
    (dict(seq_len=4, mode="next_sentence"), "seq_len=4 is too small for mode 'next_sentence'"),
    (dict(short_seq_prob=1.5), "short_seq_prob"),
    (dict(short_seq_prob=float("nan")), "short_seq_prob"),
    (dict(seed=-1), "seed"),
    (dict(seed=2**64), "seed"),
    (dict(sentence_offsets=[0, 5, 2, 9]), r"sentence_offsets must not decrease.*\[2\]=2"),
    (dict(sentence_offsets=[1, 2, 5, 9]), r"sentence_offsets\[0\] must be 0, got 1"),
    (dict(sentence_offsets=[0, 2, 5, 10]), r"len\(token_ids\)=9, got 10"),
    (dict(sentence_offsets=[]), "sentence_offsets must hold at least one value"),
    (dict(document_offsets=[0, 2, 4]), "num_sentences=3, got 4"),
    (dict(document_offsets=[0, 3, 2, 3]), "document_offsets must not decrease"),
    (dict(token_ids=np.zeros((3, 3), np.int32)), "token_ids must be 1-D"),
    (dict(backend="fortran"), "unknown backend 'fortran'"),
])
def test_bad_arguments(backend, change, message):
    arguments = dict(token_ids=GOOD[0], sentence_offsets=GOOD[1], document_offsets=GOOD[2],
                     seq_len=8, mode="full_sentences", seed=0, backend=backend)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        pack_examples(**arguments)
