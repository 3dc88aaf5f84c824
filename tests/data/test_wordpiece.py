"""WordPieceTokenizer: ids equal to `transformers`' BertTokenizer over the shipped texts (committed fixture made by
tools/make_interop_fixtures.py), BERT's special ids, word starts, and its errors."""
import gzip
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from research.data import tokenizer_loader, wordpiece

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "interop", "wordpiece_ids.json")
VOCAB_GZ = os.path.join(REPO, "third_party", "bert_vocab", "uncased_vocab.txt.gz")


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    with gzip.open(VOCAB_GZ, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return str(path)


@pytest.fixture(scope="module")
def reference():
    with open(FIXTURE) as f:
        return json.load(f)


def shipped_texts():
    """The lines the fixture covers: Austen's lines and the movie reviews' text column."""
    with open(os.path.join(REPO, "third_party/austen/austen.txt"), encoding="utf-8") as f:
        austen = [line.rstrip("\n") for line in f]
    with open(os.path.join(REPO, "third_party/movie_reviews/vader_movie_binary.tsv"), encoding="utf-8") as f:
        reviews = [line.rstrip("\n").split("\t", 1)[1] for line in f if line.strip()]
    return {"austen": austen, "movie_reviews": reviews}


def chunk_hashes(ids_per_line, chunk):
    """As tools/make_interop_fixtures.py: sha256 of each run of `chunk` lines' int32 ids, lines ended by -1."""
    hashes = []
    for start in range(0, len(ids_per_line), chunk):
        flat = []
        for ids in ids_per_line[start:start + chunk]:
            flat.extend(ids)
            flat.append(-1)
        hashes.append(hashlib.sha256(np.asarray(flat, np.int32).tobytes()).hexdigest()[:16])
    return hashes


def test_fixture_vocabulary_is_the_shipped_one(vocab_file, reference):
    with open(vocab_file, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == reference["vocab_sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_ids_equal_transformers_bert_tokenizer_on_the_shipped_texts(vocab_file, reference, lower_case):
    tokenizer = wordpiece.WordPieceTokenizer(vocab_file, lower_case=lower_case)
    for name, lines in shipped_texts().items():
        expected = reference["texts"][f"{name}/{'uncased' if lower_case else 'cased'}"]
        assert len(lines) == expected["lines"]
        assert_ids_match_the_fixture(name, lines, tokenizer.encode_batch(lines), expected, reference["chunk_lines"])


def assert_ids_match_the_fixture(name, lines, ids, expected, chunk_lines):
    """`ids` (list[list[int]]) of the shipped text `name` equal BertTokenizer's recorded in the fixture: the first
    lines one by one, the rest by hashes of `chunk_lines`-line chunks, and the token count."""
    for i, want in enumerate(expected["first_lines"]):
        assert ids[i] == want, f"{name} line {i + 1}: {lines[i]!r}"
    got = chunk_hashes(ids, chunk_lines)
    bad = [i for i, (a, b) in enumerate(zip(got, expected["chunk_sha256"])) if a != b]
    assert not bad and len(got) == len(expected["chunk_sha256"]), (
        f"{name}: ids differ from BertTokenizer's in lines {bad[0] * chunk_lines + 1}.. "
        f"({len(bad)} chunks of {chunk_lines})")
    assert sum(map(len, ids)) == expected["tokens"]


def test_special_ids_are_bert_uncased_ones(vocab_file):
    tokenizer = wordpiece.WordPieceTokenizer(vocab_file)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id,
            tokenizer.vocab_size) == (0, 100, 101, 102, 103, 30522)
    # Written special tokens are recognized, as BertTokenizer does (fill-mask input).
    ids = tokenizer.encode("Emma was [MASK] and rich.")
    assert tokenizer.mask_id in ids and [tokenizer.id_to_piece(i) for i in ids][:2] == ["emma", "was"]


def test_word_starts_and_decode(vocab_file):
    tokenizer = wordpiece.WordPieceTokenizer(vocab_file)
    ids, starts = tokenizer.encode_with_word_starts("Unbelievably handsome")
    pieces = [tokenizer.id_to_piece(i) for i in ids]
    assert starts == [not piece.startswith("##") for piece in pieces] and starts[0] and not all(starts)
    assert tokenizer.decode([tokenizer.cls_id, *ids, tokenizer.sep_id]) == "unbelievably handsome"
    table = tokenizer.word_start_table()
    assert not table[[0, 100, 101, 102, 103]].any() and table[ids[0]]


def test_accents_follow_lower_case(vocab_file):
    uncased = wordpiece.WordPieceTokenizer(vocab_file, lower_case=True)
    cased = wordpiece.WordPieceTokenizer(vocab_file, lower_case=False)
    kept = wordpiece.WordPieceTokenizer(vocab_file, lower_case=True, strip_accents=False)
    assert uncased.encode("Café") == uncased.encode("cafe")
    assert kept.encode("Café") != uncased.encode("cafe")
    assert cased.encode("Café") != uncased.encode("Café")


def test_errors_name_the_file_and_token(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        wordpiece.WordPieceTokenizer(tmp_path / "missing.txt")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[MASK\]'\]"):
        wordpiece.WordPieceTokenizer(vocab)
    with pytest.raises(ValueError, match="lower_case must be True or False"):
        wordpiece.WordPieceTokenizer(vocab, lower_case="yes")


def test_loader_picks_exactly_one_tokenizer(vocab_file, tmp_path):
    assert isinstance(tokenizer_loader.load_tokenizer(vocab_file=vocab_file), wordpiece.WordPieceTokenizer)
    with pytest.raises(ValueError, match="exactly one tokenizer"):
        tokenizer_loader.load_tokenizer()
    with pytest.raises(ValueError, match="exactly one tokenizer"):
        tokenizer_loader.load_tokenizer(spm_model="a.model", vocab_file=vocab_file)
