"""Builds pretraining TFRecords from plain text, streaming, on every core, without TensorFlow.

    python -m research.data.build_pretraining_data --input='corpus/*.txt.gz' --spm_model=spm.model \\
        --output_dir=records --seq_len=128 --shards=8 [--mode=full_sentences] [--workers=N] \\
        [--document_boundary=blank_line|file|separator [--document_separator=REGEX]] \\
        [--validation_fraction=0.05] [--seed=0] [--num_tasks=K --task_index=I]

The tokenizer model comes from `python -m research.data.tokenizer` (see research/data/tokenizer.py).
Input files are plain text, .gz or .bz2, read as a stream in blocks of whole documents (see
research/data/text_input.py for document boundaries and sentence splitting). Two passes, each on
`workers` processes (default: every CPU; started as research/data/worker_pool.py says), memory
bounded by a block and a bucket per worker:
  1. read, split, tokenize: every document is keyed by a hash of its text and the seed, which picks
     its split (about `validation_fraction` of the documents go to validation) and its bucket, and
     is spilled to a temporary file of its bucket (uint16 ids when they fit);
  2. pack: each bucket's documents, sorted by key, are packed (research/data/packing.py), shuffled
     and serialized (research/data/tfrecord.py); a shard is its buckets one after the other.
See research/data/record_shards.py: the records are identical for any number of workers and any
cut of the input into blocks. The output:
  {output_dir}/train-00000-of-00008.tfrecord ...   {output_dir}/validation-00000-of-00001.tfrecord
  {output_dir}/metadata.json                       settings, tokenizer ids, counts, files
Records are tf.train.Example with int64 features input_word_ids [seq_len], input_type_ids [seq_len]
and, in next_sentence mode, next_sentence_labels [1]; they hold unmasked ids (masking happens in the
input pipeline). Files are written under temporary names and renamed once all are complete,
metadata.json last, so an interrupted run never leaves a shard that looks finished.

On a cluster without a shared engine (array jobs), run the same command with --num_tasks=K and
--task_index=0..K-1: task I takes every K-th input file and writes its own
train-taskIIIII-of-KKKKK-SSSSS-of-NNNNN.tfrecord shards and metadata-taskIIIII-of-KKKKK.json.
For Apache Beam runners see research/data/beam_pipeline.py.
"""
import json
import os
import pickle
import shutil
import tempfile
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from absl import flags, logging

from research.data import packing, record_shards, text_input, worker_pool
from research.data.text_input import expand_input_pattern, split_sentences  # noqa: F401 (API)

_LOG_EVERY_SECONDS = 10.0
_SPILL_HEADER = np.dtype("<i8")


class Progress:
    """Logs documents, tokens/s, bytes read of the total and an ETA, at most every `every` s."""

    def __init__(self, total_bytes, every=_LOG_EVERY_SECONDS):
        self.total_bytes, self.every = max(total_bytes, 1), every
        self.read_bytes = 0
        self.start = self.last = time.monotonic()

    def on_read(self, num_bytes):
        self.read_bytes += num_bytes

    def report(self, stats, force=False):
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        done = min(self.read_bytes / self.total_bytes, 1.0)
        eta = elapsed * (1 - done) / done if done > 0 else float("nan")
        logging.info("read %.1f of %.1f MB (%.0f%%): %d documents, %d tokens, %.0f tokens/s, "
                     "ETA of reading %.0f s", self.read_bytes / 1e6, self.total_bytes / 1e6,
                     100 * done, stats.documents, stats.tokens, stats.tokens / elapsed, eta)


def _write_spill(path, docs):
    header = np.array([len(docs.keys), len(docs.sentence_lengths), len(docs.tokens),
                       docs.tokens.dtype.itemsize], _SPILL_HEADER)
    with open(path, "ab", buffering=0) as f:
        f.write(b"".join([header.tobytes()] + [a.tobytes() for a in docs.arrays()]))


def _read_spill(path, token_dtype):
    """Yields the Documents appended to the spill file `path`."""
    with open(path, "rb") as f:
        while True:
            header = np.fromfile(f, _SPILL_HEADER, 4)
            if not len(header):
                return
            num_docs, num_sentences, num_tokens, _ = (int(v) for v in header)
            keys = np.fromfile(f, np.uint64, 2 * num_docs).reshape(num_docs, 2)
            yield record_shards.Documents(keys, np.fromfile(f, np.int32, num_docs),
                                          np.fromfile(f, np.int32, num_sentences),
                                          np.fromfile(f, token_dtype, num_tokens))


# Each worker process holds the settings and the spill directory (set once by _init_worker).
_WORKER = {}


def _init_worker(settings, spill_dir):
    """`settings`: the BuildSettings, or the path of their pickle (spawned workers; see worker_pool)."""
    if isinstance(settings, str):
        with open(settings, "rb") as f:
            settings = pickle.load(f)
    _WORKER.update(settings=settings, spill_dir=spill_dir, tag=f"{os.getpid()}")


def _bucket_dir(spill_dir, split, bucket):
    return os.path.join(spill_dir, f"{split}-{bucket:05d}")


def _tokenize_and_spill(block):
    """Phase 1 on one block: tokenize, route, append each bucket's documents to its spill file."""
    routed, stats = record_shards.tokenize_block(block, _WORKER["settings"], num_threads=1)
    for (split, bucket), docs in routed.items():
        _write_spill(os.path.join(_bucket_dir(_WORKER["spill_dir"], split, bucket),
                                  f"{_WORKER['tag']}.bin"), docs)
    return stats


def _pack_unit(unit, part_path):
    """Phase 2 on one bucket: pack its spilled documents into the part file `part_path`."""
    settings = _WORKER["settings"]
    split, shard, part = unit
    bucket = shard * settings.layout.buckets_per_shard[split] + part
    directory = _bucket_dir(_WORKER["spill_dir"], split, bucket)
    docs = (d for name in sorted(os.listdir(directory))
            for d in _read_spill(os.path.join(directory, name), settings.token_dtype))
    data, stats = record_shards.pack_bucket(docs, split, bucket, settings)
    with open(part_path, "wb") as f:
        f.write(data)
    shutil.rmtree(directory)
    return stats


def _start_workers(workers, method, why, settings, spill_dir):
    """Returns the executor. Forked workers inherit the settings; spawned ones read them from a
    file, so that what goes down their start-up pipe stays small (see worker_pool)."""
    initargs = (settings, spill_dir)
    if workers > 1:
        logging.info("%d worker processes, started by %s (%s)", workers, method, why)
        if method != "fork":
            initargs = (os.path.join(spill_dir, "settings.pickle"), spill_dir)
            with open(initargs[0], "wb") as f:
                pickle.dump(settings, f, protocol=pickle.HIGHEST_PROTOCOL)
    return worker_pool.make_executor(workers, method, _init_worker, initargs)


def _concatenate(parts, destination):
    """Makes the part files one file: the first becomes `destination`, the others are appended to it
    in the kernel (copy_file_range) where it can, through user space otherwise."""
    os.replace(parts[0], destination)
    with open(destination, "r+b", buffering=0) as out:  # not "ab": copy_file_range refuses O_APPEND
        out.seek(0, os.SEEK_END)
        for part in parts[1:]:
            with open(part, "rb") as f:
                _append_file(f, out)
            os.remove(part)


def _append_file(source, out):
    size = os.fstat(source.fileno()).st_size
    try:
        while size > 0:
            copied = os.copy_file_range(source.fileno(), out.fileno(), size)
            if copied == 0:
                break
            size -= copied
    except (AttributeError, OSError):  # no copy_file_range here, or not between these files
        pass
    if size > 0:
        out.seek(0, os.SEEK_END)
        shutil.copyfileobj(source, out, 1 << 22)


def _validate(mode, seq_len, shards, validation_shards, validation_fraction, seed, packer, workers,
              num_tasks, task_index):
    if mode not in packing.MODES:
        raise ValueError(f"unknown mode '{mode}'; expected one of {', '.join(packing.MODES)}")
    if seq_len < packing.MIN_SEQ_LEN[mode]:
        raise ValueError(f"seq_len={seq_len} is too small for mode '{mode}' "
                         f"(minimum {packing.MIN_SEQ_LEN[mode]})")
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if validation_shards < 1:
        raise ValueError(f"validation_shards must be at least 1, got {validation_shards}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    if packer not in packing.BACKENDS:
        raise ValueError(f"unknown packer '{packer}'; expected one of {', '.join(packing.BACKENDS)}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if num_tasks < 1 or not 0 <= task_index < num_tasks:
        raise ValueError(f"task_index must be in [0, num_tasks) and num_tasks >= 1, got "
                         f"task_index={task_index}, num_tasks={num_tasks}")


def _load_tokenizer(tokenizer, spm_model):
    if tokenizer is not None:
        return tokenizer
    if spm_model is None:
        raise ValueError("give a tokenizer or spm_model (make one with `python -m research.data.tokenizer "
                         "--input=corpus.txt --model_prefix=spm --vocab_size=8000`)")
    from research.data.tokenizer import Tokenizer  # pylint: disable=import-outside-toplevel
    return Tokenizer(spm_model)


def build_pretraining_data(input_pattern, spm_model, output_dir, seq_len=128, shards=1,
                           mode="full_sentences", validation_fraction=0.05, seed=0,
                           packer="native", short_seq_prob=0.1, *, tokenizer=None,
                           document_boundary="blank_line", document_separator=None, workers=None,
                           validation_shards=1, num_tasks=1, task_index=0, bucket_megabytes=16,
                           block_megabytes=2, start_method="auto"):
    """Builds the records described in the module docstring and returns the metadata dict.

    Args:
      input_pattern: a glob of text files (plain, .gz, .bz2), or several globs joined by commas.
      spm_model: path of a model made by `python -m research.data.tokenizer`, or None when
        `tokenizer` is given.
      output_dir: created if needed.
      seq_len: example length, special tokens and padding included.
      shards: number of train shards.
      mode: 'full_sentences', 'segment_pair' or 'next_sentence' (see research/data/packing.py).
      validation_fraction: in [0, 1): expected share of documents held out for validation
        (chosen by a hash of each document's text and the seed).
      seed: 0 <= seed < 2**64; drives the split, the buckets, packing and shuffling.
      packer: 'native' (C++) or 'python' (its twin; same output, much slower).
      short_seq_prob: pair modes: chance of a shorter target length per document.
      tokenizer: any object with `encode_batch(texts, num_threads=)` and `pad_id`, `cls_id`,
        `sep_id`, `mask_id`, `unk_id`, `vocab_size` attributes (picklable when workers > 1 are
        spawned); overrides spm_model.
      document_boundary, document_separator: see research/data/text_input.py.
      workers: processes for both passes (default: every CPU); the records do not depend on it.
      validation_shards: number of validation shards.
      num_tasks, task_index: this run is task `task_index` of `num_tasks` (see the docstring).
      bucket_megabytes: about the text per bucket, the most one worker packs at once.
      block_megabytes: about the text per block, the most one worker tokenizes at once.
      start_method: how workers start: 'auto' (fork where safe, else spawn; see
        research/data/worker_pool.py), 'fork', 'spawn' or 'forkserver'.

    Raises:
      ValueError: a bad argument (named), or input without any token.
      FileNotFoundError: an input glob matching nothing, or a missing spm model.
      RuntimeError: a worker process died (the message says what to check).
    """
    workers = workers or os.cpu_count() or 1
    _validate(mode, seq_len, shards, validation_shards, validation_fraction, seed, packer, workers,
              num_tasks, task_index)
    method, why = worker_pool.choose_start_method(start_method)
    boundary = text_input.DocumentBoundary(document_boundary, document_separator)
    all_paths = expand_input_pattern(input_pattern)
    if num_tasks > len(all_paths):
        raise ValueError(f"num_tasks={num_tasks} is more than the {len(all_paths)} input files; each task "
                         "reads whole files, so split the input into more files (e.g. `split -C 100M`)")
    paths = all_paths[task_index::num_tasks]
    tokenizer = _load_tokenizer(tokenizer, spm_model)
    os.makedirs(output_dir, exist_ok=True)

    start = time.monotonic()
    disk_bytes = sum(os.path.getsize(p) for p in paths)
    layout = record_shards.BucketLayout.plan(
        sum(text_input.estimated_text_bytes(p) for p in paths), shards, validation_shards,
        validation_fraction, int(bucket_megabytes * (1 << 20)))
    settings = record_shards.BuildSettings(tokenizer, boundary, layout, seq_len, mode, seed,
                                           validation_fraction, short_seq_prob, packer)
    task = f"-task{task_index:05d}-of-{num_tasks:05d}" if num_tasks > 1 else ""
    metadata_name = f"metadata{task}.json"
    names = {split: layout.shard_names(split, task_index, num_tasks) for split in record_shards.SPLITS}
    final_names = [n for split in record_shards.SPLITS for n in names[split]] + [metadata_name]
    spill_dir = tempfile.mkdtemp(prefix=".tmp-spill-", dir=output_dir)
    temporary = {name: os.path.join(output_dir, f".tmp-{name}") for name in final_names}
    executor = None
    try:
        executor = _start_workers(workers, method, why, settings, spill_dir)
        for split in record_shards.SPLITS:
            for bucket in range(layout.buckets(split)):
                os.makedirs(_bucket_dir(spill_dir, split, bucket))
        read = _read_and_tokenize(executor, paths, settings, int(block_megabytes * (1 << 20)), workers,
                                  disk_bytes)
        if read.tokens == 0:
            raise ValueError(f"no tokens in the input ({len(paths)} files matching {input_pattern!r}, "
                             f"{read.bad_lines} lines not valid UTF-8)")
        read_seconds = time.monotonic() - start
        split_stats = _pack_all(executor, layout, output_dir, names, temporary)
        run = {"input": input_pattern, "num_input_files": len(paths), "num_tasks": num_tasks,
               "task_index": task_index, "metadata_file": metadata_name,
               "spm_model": os.path.abspath(spm_model) if spm_model else getattr(tokenizer, "model_path", None),
               "seconds": round(time.monotonic() - start, 3)}
        metadata = run_metadata(settings, run, read, split_stats, names)
        with open(temporary[metadata_name], "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
            f.write("\n")
        for name in final_names:
            os.replace(temporary[name], os.path.join(output_dir, name))
    except BaseException as error:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        for path in temporary.values():
            if os.path.exists(path):
                os.remove(path)
        for name in os.listdir(output_dir):
            if name.startswith(".tmp-part-"):
                os.remove(os.path.join(output_dir, name))
        if isinstance(error, BrokenProcessPool):
            raise worker_pool.worker_died_error(method) from error
        raise
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
        shutil.rmtree(spill_dir, ignore_errors=True)
    _log_summary(metadata, read_seconds, metadata["seconds"])
    return metadata


def _read_and_tokenize(executor, paths, settings, block_bytes, workers, disk_bytes):
    """Phase 1: blocks go to the workers, at most 2 per worker in flight (bounded memory)."""
    progress = Progress(disk_bytes)
    total = record_shards.BlockStats()
    pending = []
    for block in text_input.read_blocks(paths, settings.boundary, block_bytes, progress.on_read):
        pending.append(executor.submit(_tokenize_and_spill, block))
        del block
        while len(pending) >= 2 * workers or (pending and pending[0].done()):
            total.add(pending.pop(0).result())
            progress.report(total)
    for future in pending:
        total.add(future.result())
    progress.report(total, force=True)
    return total


def _pack_all(executor, layout, output_dir, names, temporary):
    """Phase 2: every bucket packed by the workers into a part file; parts joined into shards."""
    units = layout.units()
    part_paths = {u: os.path.join(output_dir, ".tmp-part-{}-{:05d}-{:05d}".format(*u)) for u in units}
    futures = [executor.submit(_pack_unit, u, part_paths[u]) for u in units]
    split_stats = {split: record_shards.BucketStats() for split in record_shards.SPLITS}
    last_log = time.monotonic()
    for done, (unit, future) in enumerate(zip(units, futures), 1):
        split_stats[unit[0]].add(future.result())
        if time.monotonic() - last_log >= _LOG_EVERY_SECONDS:
            last_log = time.monotonic()
            logging.info("packed %d of %d buckets", done, len(units))
    for split in record_shards.SPLITS:
        for shard, name in enumerate(names[split]):
            _concatenate([part_paths[(split, shard, p)] for p in range(layout.buckets_per_shard[split])],
                         temporary[name])
    return split_stats


def run_metadata(settings, run, read, split_stats, names):
    """The metadata.json dict of a finished run (also written by research/data/beam_pipeline.py).

    Args:
      settings: the run's record_shards.BuildSettings.
      run: what only the driver knows (input, task, seconds...), copied as is.
      read: record_shards.BlockStats of the whole input.
      split_stats: dict split -> record_shards.BucketStats of everything packed.
      names: dict split -> list of the shard file names.
    """
    tokenizer = settings.tokenizer
    counts = {"documents": read.documents, "sentences": read.sentences, "tokens": read.tokens,
              "bad_lines": read.bad_lines, "empty_documents": read.empty_documents,
              "text_bytes": read.text_bytes}
    for split in record_shards.SPLITS:
        if not settings.layout.shards[split]:
            continue
        stats = split_stats[split]
        counts.update({f"{split}_documents": stats.documents, f"{split}_examples": stats.examples,
                       f"{split}_tokens_packed": stats.tokens_packed,
                       f"{split}_fill_ratio": stats.filled_slots / max(stats.slots, 1)})
    return dict(
        run, seq_len=settings.seq_len, mode=settings.mode, seed=settings.seed,
        short_seq_prob=settings.short_seq_prob, validation_fraction=settings.validation_fraction,
        vocab_size=tokenizer.vocab_size,
        tokenizer={"class": type(tokenizer).__name__, "vocab_size": tokenizer.vocab_size,
                   **{f"{name}_id": int(getattr(tokenizer, f"{name}_id"))
                      for name in ("pad", "unk", "cls", "sep", "mask")}},
        document_boundary=settings.boundary.kind, document_separator=settings.boundary.separator,
        document_boundary_description=settings.boundary.describe(),
        buckets_per_shard=settings.layout.buckets_per_shard, counts=counts,
        files=[n for split in record_shards.SPLITS for n in names[split]])


def _log_summary(metadata, read_seconds, seconds):
    counts = metadata["counts"]
    splits = "; ".join(
        f"{split}: {counts[f'{split}_examples']} examples from {counts[f'{split}_documents']} documents "
        f"in {sum(name.startswith(split) for name in metadata['files'])} files, "
        f"{100 * counts[f'{split}_fill_ratio']:.1f}% of the {metadata['seq_len']} slots filled"
        for split in record_shards.SPLITS if f"{split}_examples" in counts)
    logging.info(
        "done in %.1f s (reading and tokenizing %.1f s, packing and writing %.1f s; TensorFlow is not "
        "used): %d documents (%s), %d sentences, %d tokens, %.0f tokens/s; %s; skipped: %d lines not "
        "valid UTF-8, %d documents without any token", seconds, read_seconds, seconds - read_seconds,
        counts["documents"], metadata["document_boundary_description"], counts["sentences"],
        counts["tokens"], counts["tokens"] / max(seconds, 1e-9), splits, counts["bad_lines"],
        counts["empty_documents"])


def _define_flags():
    """Defines the CLI's flags; only when run as a program, so that importing this module never
    clashes with flags of the same name elsewhere (research/main.py has --mode)."""
    flags.DEFINE_string("input", None, "Glob of input text files, plain, .gz or .bz2 (several "
                        "joined by commas).", required=True)
    flags.DEFINE_string("spm_model", None, "SentencePiece .model path (python -m "
                        "research.data.tokenizer makes one).", required=True)
    flags.DEFINE_string("output_dir", None, "Where to write the records.", required=True)
    flags.DEFINE_integer("seq_len", 128, "Example length, special tokens included.")
    flags.DEFINE_integer("shards", 1, "Number of train shards.")
    flags.DEFINE_integer("validation_shards", 1, "Number of validation shards.")
    flags.DEFINE_enum("mode", "full_sentences", list(packing.MODES), "Packing mode.")
    flags.DEFINE_float("validation_fraction", 0.05, "Expected share of documents held out.")
    flags.DEFINE_integer("seed", 0, "Seed of the split, packing and shuffling, in [0, 2**64).")
    flags.DEFINE_enum("packer", "native", list(packing.BACKENDS), "Packing implementation.")
    flags.DEFINE_float("short_seq_prob", 0.1, "Pair modes: chance of a shorter target length.")
    flags.DEFINE_enum("document_boundary", "blank_line", list(text_input.BOUNDARIES),
                      "What ends a document: a blank line, the end of a file, or a separator line.")
    flags.DEFINE_string("document_separator", None, "With --document_boundary=separator: a regular "
                        "expression matching a whole separator line, e.g. 'CHAPTER [IVXLC]+'.")
    flags.DEFINE_integer("workers", None, "Worker processes (default: every CPU).")
    flags.DEFINE_integer("num_tasks", 1, "Number of tasks of an array job sharing the input files.")
    flags.DEFINE_integer("task_index", 0, "This task's index in [0, num_tasks).")
    flags.DEFINE_integer("bucket_megabytes", 16, "About the text one worker packs at once.")
    flags.DEFINE_enum("start_method", "auto", list(worker_pool.START_METHODS), "How worker processes "
                      "start: auto is fork where safe (this command always is, on Linux), else spawn.")


def main(argv):
    del argv  # unused
    f = flags.FLAGS
    build_pretraining_data(f.input, f.spm_model, f.output_dir, f.seq_len, f.shards, f.mode,
                           f.validation_fraction, f.seed, f.packer, f.short_seq_prob,
                           document_boundary=f.document_boundary,
                           document_separator=f.document_separator, workers=f.workers,
                           validation_shards=f.validation_shards, num_tasks=f.num_tasks,
                           task_index=f.task_index, bucket_megabytes=f.bucket_megabytes,
                           start_method=f.start_method)


if __name__ == "__main__":
    from absl import app  # pylint: disable=import-outside-toplevel
    _define_flags()
    app.run(main)
