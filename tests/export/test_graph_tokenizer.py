"""The in-graph sentencepiece tokenizer against sentencepiece itself, and BERT's layout in graph."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from research.data import classification_input
from research.data import tokenizer as tokenizer_lib
from research.export import graph_tokenizer, tokenizers
from research.export.sentencepiece_graph import SentencepieceGraphTokenizer

REPO = Path(__file__).resolve().parents[2]
TRICKY = ["", "   ", "a", "Emma  walks\tthrough\nthe garden.", "  leading and trailing  ", "ЖЖЖ a Жx ЖЖ",
          "ﬁne Ｆｕｌｌ width ½", "quick—brown “fox” … jumps", "x" * 40, "dog'sdinner!!!?", "\u00a0nbsp\u3000ideographic"]


@pytest.fixture(scope="module", name="graph_tokenizer_of")
def fixture_graph_tokenizer_of(spm_model):
    return SentencepieceGraphTokenizer(str(spm_model))


def movie_review_texts(count):
    lines = (REPO / "third_party" / "movie_reviews" / "vader_movie_binary.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines[:count]]


def test_ids_equal_sentencepiece_on_corpus_reviews_and_tricky_text(graph_tokenizer_of, spm_model, corpus_file):
    # The tiny model (150 pieces, trained on generated English) leaves many characters of the reviews
    # unknown: consecutive [UNK]s must merge as sentencepiece merges them.
    texts = corpus_file.read_text(encoding="utf-8").splitlines()[:100] + movie_review_texts(300) + TRICKY
    expected = spm.SentencePieceProcessor(model_file=str(spm_model)).encode(texts)
    got = tf.function(graph_tokenizer_of.tokenize)(tf.constant(texts)).to_list()
    mismatches = [(text, g, e) for text, g, e in zip(texts, got, expected) if g != e]
    assert not mismatches, mismatches[:3]
    assert any(tokenizer_lib.UNK_ID in ids for ids in expected)


def test_special_ids_and_vocabulary_come_from_the_model(graph_tokenizer_of):
    tokenizer = graph_tokenizer_of
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (
        tokenizer_lib.PAD_ID, tokenizer_lib.UNK_ID, tokenizer_lib.CLS_ID, tokenizer_lib.SEP_ID, tokenizer_lib.MASK_ID)
    assert tokenizer.id_to_token(tf.constant([4, 2])).numpy().tolist() == [b"[MASK]", b"[CLS]"]


def test_mask_text_becomes_the_mask_id(graph_tokenizer_of):
    tokenizer = graph_tokenizer_of
    got = tokenizer.tokenize_with_masks(tf.constant(["the [MASK] dog", "[MASK]", "no mask", "a [MASK][MASK] b"]))
    plain = tokenizer.tokenize(tf.constant(["the ", " dog", "no mask", "a ", " b"])).to_list()
    mask = tokenizer.mask_id
    assert got.to_list() == [plain[0] + [mask] + plain[1], [mask], plain[2], plain[3] + [mask, mask] + plain[4]]


def test_truncate_pair_lengths_equals_truncate_pair():
    lengths = range(0, 13)
    for budget in (2, 5, 8, 9):
        pairs = list(itertools.product(lengths, lengths))
        a = tf.constant([p[0] for p in pairs])
        b = tf.constant([p[1] for p in pairs])
        got_a, got_b = graph_tokenizer.truncate_pair_lengths(a, b, budget)
        for (la, lb), ga, gb in zip(pairs, got_a.numpy(), got_b.numpy()):
            ta, tb = classification_input.truncate_pair(range(la), range(lb), budget)
            assert (ga, gb) == (len(ta), len(tb)), (la, lb, budget)


@pytest.mark.parametrize("pairs", [False, True])
def test_layout_equals_the_fine_tuning_input(graph_tokenizer_of, spm_model, pairs):
    texts = movie_review_texts(40)
    examples = [classification_input.Example(0, a, b if pairs else None) for a, b in zip(texts[:20], texts[20:])]
    seq_len = 12
    word_ids, type_ids, lengths = classification_input.encode_examples(
        examples, tokenizer_lib.Tokenizer(spm_model), seq_len)
    tokenize = graph_tokenizer_of.tokenize
    if pairs:
        got = graph_tokenizer.layout_pair(tokenize(tf.constant(texts[:20])), tokenize(tf.constant(texts[20:])),
                                          seq_len, graph_tokenizer_of)
    else:
        got = graph_tokenizer.layout_single(tokenize(tf.constant(texts[:20])), seq_len, graph_tokenizer_of)
    longest = int(lengths.max())
    np.testing.assert_array_equal(got["input_word_ids"].numpy(), word_ids[:, :longest])
    np.testing.assert_array_equal(got["input_type_ids"].numpy(), type_ids[:, :longest])
    np.testing.assert_array_equal(got["input_mask"].numpy(), (word_ids[:, :longest] != 0).astype(np.int32))


def test_unsupported_models_are_refused_naming_the_setting(tmp_path, corpus_file):
    prefix = tmp_path / "bpe"
    spm.SentencePieceTrainer.train(input=str(corpus_file), model_prefix=str(prefix), vocab_size=120, model_type="bpe",
                                   minloglevel=2)
    with pytest.raises(ValueError, match="model_type BPE"):
        SentencepieceGraphTokenizer(f"{prefix}.model")
    with pytest.raises(ValueError, match=r"no in-graph tokenizer reads 'tokenizer.json'; supported: sentencepiece "
                                         r"\(.model\), WordPiece"):
        tokenizers.graph_tokenizer_for("tokenizer.json")
