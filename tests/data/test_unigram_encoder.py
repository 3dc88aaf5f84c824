"""research.data.unigram_encoder: the native unigram encoder gives SentencePiece's own ids."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from research.data import _native, demo_data, text_input, unigram_encoder
from research.data.tokenizer import Tokenizer, train_sentencepiece


@pytest.fixture(name="austen_model", scope="module")
def fixture_austen_model(tmp_path_factory):
    """A 4000-piece unigram model of the shipped Austen text (capitals such as 'V' left out: unknowns)."""
    prefix = tmp_path_factory.mktemp("spm") / "austen4k"
    return Tokenizer(train_sentencepiece([demo_data.shipped_file(demo_data.AUSTEN_TEXT)], prefix, vocab_size=4000))


def sentencepiece_flat(tokenizer, texts):
    return _native.flatten_ids(tokenizer._sp.encode(texts, num_threads=1))  # pylint: disable=protected-access


def assert_same_ids(tokenizer, texts):
    tokens, lengths = tokenizer.encode_flat(texts, num_threads=1)
    expected_tokens, expected_lengths = sentencepiece_flat(tokenizer, texts)
    np.testing.assert_array_equal(lengths, expected_lengths)
    np.testing.assert_array_equal(tokens, expected_tokens)
    assert tokens.dtype == np.int32 and lengths.dtype == np.int64


def test_every_sentence_of_the_shipped_texts(austen_model):
    assert austen_model._unigram is not None  # pylint: disable=protected-access
    _, sentences, _ = text_input.split_documents(
        list(text_input.read_blocks([demo_data.shipped_file(demo_data.AUSTEN_TEXT)], text_input.DocumentBoundary(),
                                    1 << 30))[0], text_input.DocumentBoundary(), text_input.TextStats())
    with open(demo_data.shipped_file(demo_data.MOVIE_REVIEWS_TSV), encoding="utf-8") as f:
        reviews = [line.split("\t", 1)[1].strip() for line in f if "\t" in line]
    texts = sentences + reviews
    tokens, lengths, refused = austen_model._unigram.encode(texts)  # pylint: disable=protected-access
    # The native encoder takes every printable-ASCII text with single spaces inside (those with
    # unknown pieces included) and refuses the others.
    taken = [bool(t) and t.isascii() and t.isprintable() and t == t.strip() and "  " not in t for t in texts]
    assert sorted(refused.tolist()) == [i for i, ok in enumerate(taken) if not ok]
    assert len(tokens) > 1_000_000 and len(refused) < len(texts) // 20
    assert_same_ids(austen_model, texts)


_ALPHABET = st.sampled_from(list("aeiou nrstlm-'.,!?\"()VUXZQ") + ["  ", "---", "é", "\t", "Mr.", "the"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(_ALPHABET, max_size=25).map("".join), max_size=12))
def test_random_text_including_ties_unknowns_and_bad_spacing(austen_model, texts):
    assert_same_ids(austen_model, texts)


def test_a_tiny_model_with_many_unknowns(spm_model, corpus_file):
    tokenizer = Tokenizer(spm_model)
    assert tokenizer._unigram is not None  # pylint: disable=protected-access
    texts = [line for line in corpus_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert_same_ids(tokenizer, texts + ["Zebras? QUIZ!", "x", "", "VVV", "a--b---c"])


def test_other_model_types_go_to_sentencepiece(tmp_path, corpus_file):
    bpe = Tokenizer(train_sentencepiece([corpus_file], tmp_path / "bpe", vocab_size=150, model_type="bpe"))
    assert bpe._unigram is None  # pylint: disable=protected-access
    assert_same_ids(bpe, ["Emma walks home.", "a b", ""])
    proto = bpe._sp.serialized_model_proto()  # pylint: disable=protected-access
    _, _, types, model_type, _ = unigram_encoder.read_model(proto)
    assert model_type == 2 and types[:5] == [3, 2, 3, 3, 3]


def _austen_sentences():
    block = list(text_input.read_blocks([demo_data.shipped_file(demo_data.AUSTEN_TEXT)], text_input.DocumentBoundary(),
                                        1 << 30))[0]
    return text_input.split_documents(block, text_input.DocumentBoundary(), text_input.TextStats())[1]


def test_words_whose_choice_depends_on_float_rounding_in_the_sentence(austen_model):
    """'---' is '-' '--' or '--' '-' at equal scores: which one wins depends on the float sum the word
    starts from, so on its place in the sentence. Cached ids would be wrong for some places; the
    encoder must see the tie and encode those sentences whole."""
    rng = np.random.default_rng(0)
    sentences = [s for s in _austen_sentences() if s.isascii() and s.isprintable() and "  " not in s][:3000]
    texts = []
    for sentence in sentences:
        words = sentence.split(" ")
        position = int(rng.integers(len(words) + 1))
        texts.append(" ".join(words[:position] + [str(rng.choice(["---", "----", "---the", "--e", "a--b"]))] +
                              words[position:]))
    before = austen_model._unigram.cache_stats()  # pylint: disable=protected-access
    assert_same_ids(austen_model, texts)
    after = austen_model._unigram.cache_stats()  # pylint: disable=protected-access
    assert after["whole_sentences"] - before["whole_sentences"] >= len(texts) // 4
    assert after["hits"] - before["hits"] > 10 * len(texts)


def test_the_cache_gives_the_same_ids_as_no_cache_and_counts_what_it_did(austen_model):
    sentences = _austen_sentences()[:5000]
    uncached = unigram_encoder.build(austen_model._sp, max_cached_words=0)  # pylint: disable=protected-access
    assert not uncached.caches_words and austen_model._unigram.caches_words  # pylint: disable=protected-access
    tiny = unigram_encoder.build(austen_model._sp, max_cached_words=100)  # pylint: disable=protected-access
    expected = uncached.encode(sentences)
    for encoder in (tiny, austen_model._unigram):  # pylint: disable=protected-access
        for _ in range(2):  # the second time from the cache
            for got, want in zip(encoder.encode(sentences), expected):
                np.testing.assert_array_equal(got, want)
    assert uncached.cache_stats() == {"hits": 0, "misses": 0, "whole_sentences": 0, "clears": 0}
    stats = tiny.cache_stats()
    assert stats["clears"] > 100 and stats["hits"] > 0 and stats["misses"] > 0


def test_no_cache_where_words_are_not_independent():
    """Words are cached only when every '▁' starts a piece: '▁' is a piece and no piece holds it inside."""
    def encoder(pieces):
        return _native.UnigramEncoder([p.encode() for p in pieces], [-1.0] * len(pieces), [True] * len(pieces), 0,
                                      -1.0, 1000)
    assert encoder(["<unk>", "▁", "a", "▁a", "b"]).caches_words
    assert not encoder(["<unk>", "▁", "a", "a▁b", "b"]).caches_words
    assert not encoder(["<unk>", "a", "▁a", "b"]).caches_words
    spanning = encoder(["<unk>", "▁", "a", "b", "▁a▁b"])
    ids, lengths, refused = spanning.encode(["a b", "a b a b"])
    assert ids.tolist() == [4, 4, 4] and lengths.tolist() == [1, 2] and not len(refused)
    assert spanning.cache_stats()["hits"] == 0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unk_id 5 is not a piece id"):
        _native.UnigramEncoder([b"a"], [-1.0], [True], 5, -1.0, 10)
    with pytest.raises(ValueError, match="one item per piece"):
        _native.UnigramEncoder([b"<unk>", b"a"], [-1.0], [False, True], 0, -1.0, 10)
    encoder = _native.UnigramEncoder([b"<unk>", b"a"], [0.0, -1.0], [False, True], 0, -1.0, 10)
    with pytest.raises(TypeError, match="got an item of type int"):
        encoder.encode(["a", 3])
