"""The pretraining-record builder as an Apache Beam pipeline: the same records, on any Beam runner.

Needs the `beam` extra (`pip install ".[beam]"`). It runs the pure steps of
research/data/record_shards.py, so for the same input, settings and seed it writes the same files,
byte for byte, as `python -m research.data.build_pretraining_data` (records and shard names; the
metadata holds the same counts):

    files --read blocks--> blocks --tokenize_block--> ((split, bucket), documents)
          --GroupByKey--> buckets --pack_bucket--> ((split, shard), part) --GroupByKey--> shard files

Locally (DirectRunner, or Flink/Spark in local mode):
    python -m research.data.beam_pipeline --input='corpus/*.txt.gz' --spm_model=spm.model \\
        --output_dir=records --shards=64 --runner=DirectRunner --direct_num_workers=2 \\
        --direct_running_mode=multi_processing
On Dataflow (files on gs://; the workers need this package: --setup_file or a container image):
    python -m research.data.beam_pipeline --input='gs://bucket/corpus/*.txt.gz' \\
        --spm_model=spm.model --output_dir=gs://bucket/records --shards=256 \\
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://bucket/tmp \\
        --setup_file=./setup.py
(`--runner=FlinkRunner --flink_master=host:8081` or `--runner=SparkRunner` likewise.) Arguments the
builder does not know go to Beam's PipelineOptions. The tokenizer travels to the workers inside the
pipeline (pickled), so only the machine that launches the pipeline reads --spm_model.
"""
import argparse
import json
import posixpath

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from research.data import build_pretraining_data, packing, record_shards, text_input

_SPLIT_INDEX = {split: i for i, split in enumerate(record_shards.SPLITS)}


def _blocks_of_file(path, boundary, block_bytes):
    """Blocks (list[bytes] of pieces) of one file, read through Beam's file systems (gs://, ...;
    .gz/.bz2 decompressed by extension)."""
    with FileSystems.open(path) as stream:
        yield from text_input.group_into_blocks(text_input.pieces_of_stream(stream, boundary, block_bytes),
                                                block_bytes)


_STATS_KEY = ("stats", -1)


class _TokenizeBlock(beam.DoFn):
    """tokenize_block: yields ((split, bucket), Documents), and (_STATS_KEY, the block's counts)."""

    def __init__(self, settings):
        super().__init__()
        self._settings = settings

    def process(self, block):
        routed, stats = record_shards.tokenize_block(block, self._settings, num_threads=1)
        for key, docs in routed.items():
            yield key, docs
        yield _STATS_KEY, stats


def _pack(bucket_and_docs, settings):
    (split, bucket), docs = bucket_and_docs
    data, stats = record_shards.pack_bucket(list(docs), split, bucket, settings)
    per_shard = settings.layout.buckets_per_shard[split]
    return (split, bucket // per_shard), (bucket % per_shard, data, stats)


def _write_shard(shard_and_parts, output_dir, names):
    """Writes one shard: its parts in order (absent parts are empty buckets). Returns
    (split, BucketStats)."""
    (split, shard), parts = shard_and_parts
    parts = sorted((p for p in parts if p is not None), key=lambda p: p[0])
    total = record_shards.BucketStats()
    with FileSystems.create(posixpath.join(output_dir, names[split][shard])) as out:
        for _, data, stats in parts:
            out.write(data)
            total.add(stats)
    return split, total


def _sum(stats_list, cls):
    total = cls()
    for stats in stats_list:
        total.add(stats)
    return total


def _write_metadata(_, output_dir, settings, run, block_stats, shard_stats, names):
    split_stats = {split: _sum([s for name, s in shard_stats if name == split], record_shards.BucketStats)
                   for split in record_shards.SPLITS}
    metadata = build_pretraining_data.run_metadata(
        settings, run, _sum(block_stats, record_shards.BlockStats), split_stats, names)
    with FileSystems.create(posixpath.join(output_dir, "metadata.json")) as f:
        f.write((json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def build_pipeline(pipeline, input_pattern, tokenizer, output_dir, seq_len=128, shards=1,
                   mode="full_sentences", validation_fraction=0.05, seed=0, short_seq_prob=0.1,
                   document_boundary="blank_line", document_separator=None, validation_shards=1,
                   bucket_megabytes=16, block_megabytes=2):
    """Adds the builder to `pipeline` (a beam.Pipeline); arguments as
    research.data.build_pretraining_data.build_pretraining_data. Output files are written when the
    pipeline runs."""
    if mode not in packing.MODES:
        raise ValueError(f"unknown mode '{mode}'; expected one of {', '.join(packing.MODES)}")
    boundary = text_input.DocumentBoundary(document_boundary, document_separator)
    files = []
    for part in (p.strip() for p in input_pattern.split(",") if p.strip()):
        matched = sorted(FileSystems.match([part])[0].metadata_list, key=lambda m: m.path)
        if not matched:
            raise FileNotFoundError(f"--input pattern matches no file: {part}")
        files += matched
    text_bytes = sum(m.size_in_bytes * text_input.COMPRESSION_RATIO.get(posixpath.splitext(m.path)[1], 1)
                     for m in files)
    layout = record_shards.BucketLayout.plan(text_bytes, shards, validation_shards, validation_fraction,
                                             int(bucket_megabytes * (1 << 20)))
    settings = record_shards.BuildSettings(tokenizer, boundary, layout, seq_len, mode, seed,
                                           validation_fraction, short_seq_prob)
    names = {split: layout.shard_names(split) for split in record_shards.SPLITS}
    block_bytes = int(block_megabytes * (1 << 20))
    tokenized = (pipeline
                 | "Files" >> beam.Create([m.path for m in files])
                 | "ReadBlocks" >> beam.FlatMap(_blocks_of_file, boundary, block_bytes)
                 | "SpreadBlocks" >> beam.Reshuffle()
                 | "Tokenize" >> beam.ParDo(_TokenizeBlock(settings)))
    block_stats = (tokenized
                   | "StatsOnly" >> beam.Filter(lambda kv: kv[0] == _STATS_KEY)
                   | "DropKey" >> beam.Values())
    every_shard = pipeline | "EveryShard" >> beam.Create(
        [((split, shard), None) for split in record_shards.SPLITS for shard in range(layout.shards[split])])
    parts = (tokenized
             | "DocumentsOnly" >> beam.Filter(lambda kv: kv[0] != _STATS_KEY)
             | "GroupBuckets" >> beam.GroupByKey()
             | "Pack" >> beam.Map(_pack, settings))
    shard_stats = ((parts, every_shard)
                   | "AllShards" >> beam.Flatten()
                   | "GroupShards" >> beam.GroupByKey()
                   | "WriteShards" >> beam.Map(_write_shard, output_dir, names))
    run = {"input": input_pattern, "num_input_files": len(files), "num_tasks": 1, "task_index": 0,
           "metadata_file": "metadata.json", "runner": "beam",
           "spm_model": getattr(tokenizer, "model_path", None)}
    return (pipeline
            | "MetadataTrigger" >> beam.Create([None])
            | "WriteMetadata" >> beam.Map(_write_metadata, output_dir, settings, run,
                                          beam.pvalue.AsList(block_stats),
                                          beam.pvalue.AsList(shard_stats), names))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="Globs of text files, joined by commas.")
    parser.add_argument("--spm_model", required=True, help="SentencePiece model.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--validation_shards", type=int, default=1)
    parser.add_argument("--mode", default="full_sentences", choices=packing.MODES)
    parser.add_argument("--validation_fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--short_seq_prob", type=float, default=0.1)
    parser.add_argument("--document_boundary", default="blank_line", choices=text_input.BOUNDARIES)
    parser.add_argument("--document_separator", default=None)
    parser.add_argument("--bucket_megabytes", type=float, default=16)
    known, pipeline_args = parser.parse_known_args(argv)
    from research.data.tokenizer import Tokenizer  # pylint: disable=import-outside-toplevel
    if "://" not in known.output_dir:
        import os  # pylint: disable=import-outside-toplevel
        os.makedirs(known.output_dir, exist_ok=True)
    with beam.Pipeline(options=PipelineOptions(pipeline_args)) as pipeline:
        build_pipeline(pipeline, known.input, Tokenizer(known.spm_model), known.output_dir,
                       known.seq_len, known.shards, known.mode, known.validation_fraction, known.seed,
                       known.short_seq_prob, known.document_boundary, known.document_separator,
                       known.validation_shards, known.bucket_megabytes)


if __name__ == "__main__":
    main()
