"""Tests of research.data.tokenizer: special ids, round trips, word starts, errors."""
import numpy as np
import pytest

from research.data import tokenizer as tok


def test_special_tokens_sit_at_fixed_ids(spm_model):
    t = tok.Tokenizer(spm_model)
    assert t.vocab_size == 150
    assert [t.id_to_piece(i) for i in range(5)] == list(tok.SPECIAL_TOKENS)
    assert (tok.PAD_ID, tok.UNK_ID, tok.CLS_ID, tok.SEP_ID, tok.MASK_ID) == (0, 1, 2, 3, 4)


def test_round_trip_and_no_special_ids_from_text(spm_model):
    t = tok.Tokenizer(spm_model)
    text = "The quick brown fox jumps over the lazy dog."
    ids = t.encode(text)
    assert t.decode(ids) == text
    # Special pieces written in raw text are ordinary characters, never the control ids.
    ids = t.encode("[MASK] [CLS] [SEP] [PAD] emma")
    assert not set(ids) & {tok.PAD_ID, tok.CLS_ID, tok.SEP_ID, tok.MASK_ID}
    assert t.encode_batch(["emma walks", "", "the dog"]) == [t.encode("emma walks"), [],
                                                             t.encode("the dog")]


def test_unknown_characters_map_to_unk(spm_model):
    t = tok.Tokenizer(spm_model)
    assert tok.UNK_ID in t.encode("emma \u4f60\u597d")


def test_word_starts(spm_model):
    t = tok.Tokenizer(spm_model)
    ids, starts = t.encode_with_word_starts("Harriet walks through the meadow")
    assert len(ids) == len(starts)
    assert starts[0]
    assert sum(starts) == 5
    for i, start in zip(ids, starts):
        assert start == t.id_to_piece(i).startswith(tok.WORD_START)
    table = t.word_start_table()
    assert table.dtype == np.bool_ and table.shape == (t.vocab_size,)
    assert not table[:5].any()
    assert table[ids].tolist() == starts
    table[:] = True  # a copy: the tokenizer is unaffected
    assert not t.word_start_table()[:5].any()


def test_missing_files_are_named(tmp_path):
    missing = tmp_path / "nope.model"
    with pytest.raises(FileNotFoundError, match="nope.model"):
        tok.Tokenizer(missing)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        tok.train_sentencepiece([tmp_path / "nope.txt"], tmp_path / "m", vocab_size=50)


def test_foreign_model_is_rejected(tmp_path, corpus_file):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(input=str(corpus_file), model_prefix=str(tmp_path / "plain"),
                                   vocab_size=100, minloglevel=2)
    with pytest.raises(ValueError, match="special tokens"):
        tok.Tokenizer(tmp_path / "plain.model")


def test_ids_are_attributes_and_the_tokenizer_pickles(spm_model):
    import pickle
    t = tok.Tokenizer(spm_model)
    assert (t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id, t.vocab_size) == (0, 1, 2, 3, 4, 150)
    copy = pickle.loads(pickle.dumps(t))
    assert copy.encode_batch(["emma walks home"], num_threads=1) == t.encode_batch(["emma walks home"])
    assert copy.model_path == t.model_path


def test_too_large_a_vocabulary_says_what_to_pass(tmp_path, corpus_file):
    with pytest.raises(ValueError, match=r"vocab_size=2000 is too large.*at most (\d+) pieces.*"
                                         r"Pass vocab_size=\1 or less \(--vocab_size=\1"):
        tok.train_sentencepiece([corpus_file], tmp_path / "big", vocab_size=2000)


def test_the_command_trains_a_model_from_another_directory(tmp_path, corpus_file):
    import shutil
    import subprocess
    import sys
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(corpus_file, work / "corpus.txt")
    command = [sys.executable, "-m", "research.data.tokenizer", "--input=corpus.txt", "--model_prefix=spm"]
    done = subprocess.run(command + ["--vocab_size=120"], cwd=work, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "--spm_model=spm.model" in done.stdout
    assert tok.Tokenizer(work / "spm.model").vocab_size == 120
    failed = subprocess.run(command + ["--vocab_size=5000"], cwd=work, capture_output=True, text=True,
                            timeout=300, check=False)
    assert failed.returncode != 0
    assert "error: vocab_size=5000 is too large" in failed.stderr and "Traceback" not in failed.stderr
