"""The in-graph WordPiece tokenizer against research.data.wordpiece (Hugging Face `tokenizers`) and the committed
BertTokenizer ids of the shipped texts, cased and uncased; BERT's layout of its ids; its errors."""
import gzip
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from data.test_wordpiece import FIXTURE, VOCAB_GZ, assert_ids_match_the_fixture, shipped_texts
from research.data import classification_input, wordpiece
from research.export import graph_tokenizer, tokenizers
from research.export.wordpiece_graph import WordPieceGraphTokenizer, normalize_character

TRICKY = [
    "", "   ", "\t\n", "a", "Hello, world! I'm fine.", "Emma  walks\tthrough\nthe garden...",
    "  leading and trailing  ", "Café naïve résumé ÉCOLE Ångström", "İstanbul ΣΊΣΥΦΟΣ Straße ﬁne",
    "x\u0301y e\u0301\u0323", "中文字 and 日本語かな 한국어", "\uf900 compatibility ideograph", "x" * 100, "x" * 101,
    "a" + "b" * 99 + " z", "unbelievablyhandsomeness", "☃ snowman 🙂 \u0378 unassigned \ue000 private",
    "zero\u200bwidth soft\u00adhyphen ctrl\x07bell nul\x00x", "nbsp\u00a0ideographic\u3000line\u2028para\u2029",
    "quick—brown “fox” … jumps ¿qué? «non»", "dog'sdinner!!!?", "[MASK] the [CLS]x[SEP] [PAD][UNK] [mask] [MA\x00SK]",
    "1,000.50 $5 50% a@b.c #tag", "ǅ ǲ ᾈ Ω K Å", "\u1fef varia \u037e greek question", "ｆｕｌｌ ｗｉｄｔｈ ½",
    "\ufffd replacement",
]


@pytest.fixture(scope="module", name="vocab_file")
def fixture_vocab_file(tmp_path_factory):
    """BERT's uncased vocab.txt (third_party/bert_vocab), unpacked."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    with gzip.open(VOCAB_GZ, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return str(path)


@pytest.fixture(scope="module", name="reference")
def fixture_reference():
    """BertTokenizer's ids of the shipped texts (tests/fixtures/interop/wordpiece_ids.json)."""
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module", name="graph")
def fixture_graph(vocab_file):
    """{(lower_case, strip_accents): (graph tokenize as a tf.function, the Python tokenizer)}."""
    made = {}
    for lower_case, strip_accents in ((True, None), (False, None), (True, False)):
        tokenizer = WordPieceGraphTokenizer(vocab_file, lower_case=lower_case, strip_accents=strip_accents)
        made[(lower_case, strip_accents)] = (
            tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)]),
            wordpiece.WordPieceTokenizer(vocab_file, lower_case=lower_case, strip_accents=strip_accents))
    return made


def graph_ids(tokenize, lines, batch=2048):
    ids = []
    for start in range(0, len(lines), batch):
        ids.extend(tokenize(tf.constant(lines[start:start + batch])).to_list())
    return ids


@pytest.mark.parametrize("setting", [(True, None), (False, None), (True, False)],
                         ids=["uncased", "cased", "uncased-accents-kept"])
def test_ids_equal_tokenizers_on_tricky_text(graph, setting):
    tokenize, python = graph[setting]
    got = graph_ids(tokenize, TRICKY)
    mismatches = [(text, g, python.encode(text)) for text, g in zip(TRICKY, got) if g != python.encode(text)]
    assert not mismatches, mismatches[:3]
    unk = python.unk_id
    assert got[TRICKY.index("x" * 101)] == [unk] and got[TRICKY.index("")] == []
    assert python.mask_id in got[TRICKY.index("[MASK] the [CLS]x[SEP] [PAD][UNK] [mask] [MA\x00SK]")]


@pytest.mark.slow
@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_ids_equal_bert_tokenizer_on_the_shipped_texts(graph, reference, lower_case):
    tokenize, _ = graph[(lower_case, None)]
    for name, lines in shipped_texts().items():
        expected = reference["texts"][f"{name}/{'uncased' if lower_case else 'cased'}"]
        assert_ids_match_the_fixture(name, lines, graph_ids(tokenize, lines), expected, reference["chunk_lines"])


def test_normalization_of_single_characters():
    assert normalize_character(ord("É"), lower_case=True, strip_accents=True) == "e"
    assert normalize_character(ord("É"), lower_case=True, strip_accents=False) == "é"
    assert normalize_character(ord("É"), lower_case=False, strip_accents=False) == "É"
    assert normalize_character(ord("!"), True, True) == " ! "
    assert normalize_character(ord("中"), False, False) == " 中 "
    assert normalize_character(0x7, True, True) == "" and normalize_character(0x0, True, True) == ""
    assert normalize_character(0x3000, True, True) == " " and normalize_character(ord("\t"), False, False) == " "


def test_layout_equals_classification_input(graph, vocab_file):
    tokenizer = WordPieceGraphTokenizer(vocab_file)
    python = graph[(True, None)][1]
    texts = ["Emma was handsome, clever, and rich.", "", "x" * 30 + " " + "words " * 20]
    inputs = graph_tokenizer.layout_single(tokenizer.tokenize(tf.constant(texts)), 12, tokenizer)
    word_ids, type_ids, lengths = classification_input.encode_examples(
        [classification_input.Example(0, text) for text in texts], python, 12)
    longest = int(lengths.max())
    np.testing.assert_array_equal(inputs["input_word_ids"].numpy(), word_ids[:, :longest])
    np.testing.assert_array_equal(inputs["input_type_ids"].numpy(), type_ids[:, :longest])
    np.testing.assert_array_equal(inputs["input_mask"].numpy(), (word_ids[:, :longest] != python.pad_id))
    assert word_ids[1, :2].tolist() == [101, 102]


def test_special_ids_and_masks_come_from_the_vocabulary(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["the", "[UNK]", "[SEP]", "[MASK]", "[PAD]", "[CLS]", "dog", "##s", ","]) + "\n")
    tokenizer = tokenizers.graph_tokenizer_for(str(vocab), lower_case=True)
    assert isinstance(tokenizer, WordPieceGraphTokenizer)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id,
            tokenizer.vocab_size) == (4, 1, 5, 2, 3, 9)
    got = tokenizer.tokenize_with_masks(tf.constant(["The dogs, [MASK] cat", "[MASK][MASK]"])).to_list()
    assert got == [[0, 6, 7, 8, 3, 1], [3, 3]]
    assert tokenizer.id_to_token(tf.constant([3, 7])).numpy().tolist() == [b"[MASK]", b"##s"]
    assert tokenizer.export_facts() == {"lower_case": True, "strip_accents": True}


def test_errors_name_the_file_token_and_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        WordPieceGraphTokenizer(str(tmp_path / "missing.txt"))
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[MASK\]'\]"):
        WordPieceGraphTokenizer(str(vocab))
    with pytest.raises(ValueError, match="lower_case must be True or False, got 'yes'"):
        WordPieceGraphTokenizer(str(vocab), lower_case="yes")
    with pytest.raises(ValueError, match="strip_accents must be True, False or None, got 1"):
        WordPieceGraphTokenizer(str(vocab), strip_accents=1)
