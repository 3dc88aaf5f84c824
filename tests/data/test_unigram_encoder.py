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
    _, _, types, model_type, _ = unigram_encoder.read_model(bpe._sp.serialized_model_proto())  # pylint: disable=protected-access
    assert model_type == 2 and types[:5] == [3, 2, 3, 3, 3]
