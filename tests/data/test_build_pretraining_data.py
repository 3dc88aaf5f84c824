"""End-to-end tests of research.data.build_pretraining_data on a tiny generated corpus."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from research.data import build_pretraining_data as bpd
from research.data import features
from research.data.tokenizer import CLS_ID, PAD_ID, SEP_ID

SEQ_LEN = 32


@pytest.fixture(name="input_dir")
def fixture_input_dir(tmp_path, make_corpus_text):
    """Two text files; the second holds a line that is not valid UTF-8 inside a document."""
    directory = tmp_path / "text"
    directory.mkdir()
    (directory / "a.txt").write_text(make_corpus_text(30, seed=1), encoding="utf-8")
    text = make_corpus_text(10, seed=2).encode("utf-8")
    (directory / "b.txt").write_bytes(b"Emma walks home.\n\xff\xfe broken \xc3\x28 line\n\n" + text)
    return directory


def read_records(pattern, mode):
    """Reads records back with tf.data; returns dict name -> int64 [E, ...] numpy."""
    import tensorflow as tf
    spec = {features.INPUT_WORD_IDS: tf.io.FixedLenFeature([SEQ_LEN], tf.int64),
            features.INPUT_TYPE_IDS: tf.io.FixedLenFeature([SEQ_LEN], tf.int64)}
    if mode == "next_sentence":
        spec[features.NEXT_SENTENCE_LABELS] = tf.io.FixedLenFeature([1], tf.int64)
    files = tf.io.gfile.glob(pattern)
    dataset = tf.data.TFRecordDataset(sorted(files)).map(
        lambda record: tf.io.parse_single_example(record, spec)).batch(100_000)
    return {k: v.numpy() for k, v in next(iter(dataset)).items()}


def test_cli_end_to_end(tmp_path, input_dir, spm_model):
    output_dir = tmp_path / "records"
    result = subprocess.run(
        [sys.executable, "-m", "research.data.build_pretraining_data",
         f"--input={input_dir}/*.txt", f"--spm_model={spm_model}", f"--output_dir={output_dir}",
         f"--seq_len={SEQ_LEN}", "--shards=3", "--mode=next_sentence", "--validation_fraction=0.1",
         "--seed=5"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "1 lines not valid UTF-8 were skipped" in result.stderr
    assert sorted(os.listdir(output_dir)) == [
        "metadata.json", "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord", "validation-00000-of-00001.tfrecord"]
    metadata = json.loads((output_dir / "metadata.json").read_text())
    counts = metadata["counts"]
    assert counts["bad_lines"] == 1 and counts["documents"] == 41
    assert (counts["train_documents"], counts["validation_documents"]) == (37, 4)
    assert metadata["seq_len"] == SEQ_LEN and metadata["vocab_size"] == 150
    assert metadata["mode"] == "next_sentence" and metadata["seed"] == 5

    train = read_records(str(output_dir / "train-*"), "next_sentence")
    validation = read_records(str(output_dir / "validation-*"), "next_sentence")
    assert len(train[features.INPUT_WORD_IDS]) == counts["train_examples"]
    assert len(validation[features.INPUT_WORD_IDS]) == counts["validation_examples"]
    words = train[features.INPUT_WORD_IDS]
    assert (words[:, 0] == CLS_ID).all() and ((words == SEP_ID).sum(axis=1) == 2).all()
    assert words.max() < 150
    assert set(np.unique(train[features.NEXT_SENTENCE_LABELS])) == {0, 1}


@pytest.mark.parametrize("mode", ["full_sentences", "segment_pair"])
def test_function_is_deterministic_and_packers_agree(tmp_path, input_dir, spm_model, mode):
    def build(name, packer):
        bpd.build_pretraining_data(f"{input_dir}/a.txt,{input_dir}/b.txt", spm_model,
                                   tmp_path / name, SEQ_LEN, shards=2, mode=mode, seed=3,
                                   packer=packer)
        return {f: (tmp_path / name / f).read_bytes() for f in os.listdir(tmp_path / name)
                if f.endswith(".tfrecord")}

    native = build("native", "native")
    assert native == build("again", "native")
    assert native == build("python", "python")
    records = read_records(str(tmp_path / "native" / "train-*"), mode)
    words = records[features.INPUT_WORD_IDS]
    types = records[features.INPUT_TYPE_IDS]
    lengths = (words != PAD_ID).sum(axis=1)
    columns = np.arange(SEQ_LEN)[None, :]
    # Each row is [CLS] ... [SEP] followed only by padding, with type id 0 on the padding.
    assert (lengths >= 3).all()
    np.testing.assert_array_equal(words != PAD_ID, columns < lengths[:, None])
    assert (words[:, 0] == CLS_ID).all() and not (words[:, 1:] == CLS_ID).any()
    np.testing.assert_array_equal(words[np.arange(len(words)), lengths - 1], SEP_ID)
    assert not types[columns >= lengths[:, None]].any()
    if mode == "full_sentences":
        assert not types.any()
    else:  # [CLS] A [SEP] B [SEP]: type 0 through the first [SEP], 1 on B and the last [SEP]
        assert ((words == SEP_ID).sum(axis=1) == 2).all()
        first_sep = np.argmax(words == SEP_ID, axis=1)
        expected_types = (columns > first_sep[:, None]) & (columns < lengths[:, None])
        np.testing.assert_array_equal(types, expected_types.astype(types.dtype))


def test_no_validation_split(tmp_path, input_dir, spm_model):
    metadata = bpd.build_pretraining_data(str(input_dir / "*.txt"), spm_model, tmp_path / "out",
                                          SEQ_LEN, validation_fraction=0.0)
    assert metadata["files"] == ["train-00000-of-00001.tfrecord"]
    assert "validation_examples" not in metadata["counts"]


def test_sentence_splitting():
    assert bpd.split_sentences('He said "Go!" Then left. Why? "Because."  Fine') == [
        'He said "Go!"', "Then left.", "Why?", '"Because."', "Fine"]
    assert bpd.split_sentences("  ") == []


def test_write_error_leaves_no_files(tmp_path, input_dir, spm_model, monkeypatch):
    import tensorflow as tf
    real_writer = tf.io.TFRecordWriter
    opened = []

    def failing_writer(path):  # the third shard hits a full disk
        opened.append(path)
        if len(opened) == 3:
            raise OSError(28, "No space left on device")
        return real_writer(path)

    monkeypatch.setattr(tf.io, "TFRecordWriter", failing_writer)
    with pytest.raises(OSError, match="No space"):
        bpd.build_pretraining_data(str(input_dir / "*.txt"), spm_model, tmp_path / "out", SEQ_LEN,
                                   shards=4)
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("change, error, message", [
    (dict(input_pattern="{tmp}/missing/*.txt"), FileNotFoundError, "missing/\\*.txt"),
    (dict(spm_model="{tmp}/none.model"), FileNotFoundError, "none.model"),
    (dict(input_pattern="{tmp}/empty.txt"), ValueError, "no tokens"),
    (dict(input_pattern="{tmp}/binary.txt"), ValueError, r"no tokens.*2 lines not valid UTF-8"),
    (dict(seq_len=4, mode="segment_pair"), ValueError, "seq_len=4"),
    (dict(mode="sideways"), ValueError, "unknown mode 'sideways'"),
    (dict(shards=0), ValueError, "shards must be at least 1, got 0"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction"),
    (dict(packer="gpu"), ValueError, "unknown packer 'gpu'"),
    (dict(seed=-3), ValueError, "seed must be in"),
])
def test_bad_arguments(tmp_path, input_dir, spm_model, change, error, message):
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xff\n\n\xc3\x28\n")
    arguments = dict(input_pattern=str(input_dir / "*.txt"), spm_model=str(spm_model),
                     output_dir=str(tmp_path / "out"), seq_len=SEQ_LEN)
    arguments.update({k: v.format(tmp=tmp_path) if isinstance(v, str) else v
                      for k, v in change.items()})
    with pytest.raises(error, match=message):
        bpd.build_pretraining_data(**arguments)
