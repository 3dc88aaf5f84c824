"""The Apache Beam pipeline (DirectRunner) writes the same records as the local builder.

Needs the `beam` extra, which needs protobuf < 7 while the exporter's sentencepiece proto needs 7:
the README's test command runs this module in its own environment (`-m beam`) and deselects it in the
main one (`-m "not beam"`); elsewhere it is skipped where apache_beam is not installed.
"""
import gzip
import json
import os

import pytest

from research.data import build_pretraining_data as bpd
from research.data.tokenizer import Tokenizer

# apache_beam is imported inside the test, so that `-m "not beam"` deselects it (not a skip) where
# apache_beam is missing.
pytestmark = pytest.mark.beam

SEQ_LEN = 32


@pytest.mark.parametrize("mode", ["full_sentences", "next_sentence"])
def test_beam_writes_the_local_builders_records(tmp_path, make_corpus_text, spm_model, mode):
    beam = pytest.importorskip("apache_beam")
    from research.data import beam_pipeline  # pylint: disable=import-outside-toplevel
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text(make_corpus_text(40, seed=1), encoding="utf-8")
    (text / "b.txt.gz").write_bytes(gzip.compress(make_corpus_text(25, seed=2).encode("utf-8")))
    settings = dict(seq_len=SEQ_LEN, shards=3, mode=mode, validation_fraction=0.2, seed=7,
                    bucket_megabytes=0.002, block_megabytes=0.001)
    pattern = f"{text}/a.txt,{text}/b.txt.gz"
    local = bpd.build_pretraining_data(pattern, spm_model, tmp_path / "local", workers=1, **settings)
    (tmp_path / "beam").mkdir()
    options = beam.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"])
    with beam.Pipeline(options=options) as pipeline:
        beam_pipeline.build_pipeline(pipeline, pattern, Tokenizer(spm_model), str(tmp_path / "beam"),
                                     **settings)
    names = sorted(os.listdir(tmp_path / "local"))
    assert sorted(os.listdir(tmp_path / "beam")) == names
    for name in names:
        if name.endswith(".tfrecord"):
            assert (tmp_path / "beam" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    metadata = json.loads((tmp_path / "beam" / "metadata.json").read_text())
    assert metadata["counts"] == local["counts"]
    assert metadata["tokenizer"] == local["tokenizer"]
