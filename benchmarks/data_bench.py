"""The record builder's speed and memory: packer, whole runs against google-research/bert, workers, Beam, peak RSS.

    python benchmarks/data_bench.py --bench=packer [--input=third_party/austen/austen.txt]
    python benchmarks/data_bench.py --bench=reference,workers,rss,beam,encoder --copies=50 \\
        --bert_path=DIR --beam_python=PYTHON [--scratch=DIR] [--write_results]

packer:    `pack_examples` in every mode, native (C++) against its Python twin (target >= 20x).
reference: whole runs, one process each, of `python -m research.data.build_pretraining_data
           --mode=next_sentence --workers=1` and of google-research/bert's create_pretraining_data.py
           (PyPI bert-tensorflow==1.0.4, installed with `pip install --no-deps --target=DIR`, given as
           --bert_path; its code runs unchanged, here only called: tensorflow.compat.v1, dupe_factor 1,
           seq 128, 20 predictions) on the same text: the shipped Austen novels repeated --copies
           times. The reference reads one sentence per line with blank lines between documents, so it
           gets our documents and sentences written that way (not timed), and a WordPiece vocabulary
           made from our sentencepiece model's pieces ('▁x' -> 'x', 'y' -> '##y'), the same size. Runs
           alternate: ours, the reference, ours (--reference_runs reference runs). Rates are input
           tokens (our tokenizer's count) per second of the whole process, TensorFlow's import included.
workers:   ours with 1 and 2 worker processes, alternated, --repeats each (target >= 1.7x on 2 cores).
rss:       peak RSS of the builder's main process and of its largest worker, at --copies and at
           10x --copies of the text (target: no growth, <= 1 GB).
encoder:   tokenizing the --copies corpus (split as the builder splits it, in 4 MB blocks) three ways,
           alternated, best of --repeats + 1: the native unigram encoder with one word cache for the
           whole corpus (as the builder runs it), the same with a fresh cache for every block (as if
           every block were new text: the repeated corpus cannot flatter the cache), and SentencePiece's
           own batch encode plus flattening; the caches' hit rates.
beam:      the Beam pipeline (DirectRunner, multi_processing, 2 workers) in --beam_python's environment
           (apache-beam installed) beside the local builder with 2 workers, on --beam_copies copies.
Every figure is printed with wall and CPU seconds; --write_results updates benchmarks/RESULTS.md.
"""
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from research.data import _native, text_input  # noqa: E402
from research.data.packing import MODES, pack_examples  # noqa: E402
from research.data.tokenizer import WORD_START, Tokenizer, train_sentencepiece  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_AUSTEN = os.path.join(_REPO, "third_party", "austen", "austen.txt")

flags.DEFINE_list("bench", ["packer"], "Any of packer, reference, workers, rss, beam, encoder.")
flags.DEFINE_string("input", _AUSTEN, "packer: text corpus.")
flags.DEFINE_string("spm_model", None, "SentencePiece model; an 8k one is trained on the Austen text when unset.")
flags.DEFINE_integer("seq_len", 128, "Example length.")
flags.DEFINE_integer("native_repeats", 7, "packer: timed runs of the native packer per mode.")
flags.DEFINE_integer("python_repeats", 3, "packer: timed runs of the Python packer per mode.")
flags.DEFINE_integer("copies", 50, "Copies of the Austen text in the whole-run corpus (50: 201 MB).")
flags.DEFINE_integer("beam_copies", 5, "beam: copies of the Austen text.")
flags.DEFINE_integer("repeats", 2, "workers: runs of each side.")
flags.DEFINE_integer("reference_runs", 1, "reference: runs of google's builder (ours runs one more).")
flags.DEFINE_string("bert_path", None, "reference: directory holding bert-tensorflow's `bert` package.")
flags.DEFINE_string("beam_python", None, "beam: a Python with apache-beam (and this tree on PYTHONPATH).")
flags.DEFINE_string("scratch", None, "Where corpora and outputs go (default: a temporary directory).")
flags.DEFINE_bool("write_results", False, "Update the data sections of benchmarks/RESULTS.md.")
FLAGS = flags.FLAGS

# Runs the local builder in a child process and prints its peak RSS (main, largest worker) as JSON.
_OURS = """
import json, resource, sys
from research.data import build_pretraining_data as bpd
metadata = bpd.build_pretraining_data(sys.argv[1], sys.argv[2], sys.argv[3], 128, shards=4,
                                      mode="next_sentence", workers=int(sys.argv[4]))
print(json.dumps({"tokens": metadata["counts"]["tokens"], "documents": metadata["counts"]["documents"],
                  "main_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "worker_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

# Runs google-research/bert's builder unchanged: its module under tensorflow.compat.v1 (which it
# imports itself), its flags set as its command line would, its main() called.
_REFERENCE = """
import json, resource, sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from bert import create_pretraining_data as reference
imported = time.perf_counter()
reference.FLAGS(["create_pretraining_data", "--input_file=" + sys.argv[2], "--output_file=" + sys.argv[3],
                 "--vocab_file=" + sys.argv[4], "--do_lower_case=False", "--max_seq_length=128",
                 "--max_predictions_per_seq=20", "--masked_lm_prob=0.15", "--random_seed=12345",
                 "--dupe_factor=1", "--short_seq_prob=0.1"])
reference.tf.logging.set_verbosity(reference.tf.logging.WARN)
reference.main(None)
print(json.dumps({"import_s": imported - start, "main_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

_BEAM = """
import json, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from research.data import beam_pipeline
from research.data.tokenizer import Tokenizer
options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=2",
                           "--direct_running_mode=multi_processing"])
with beam.Pipeline(options=options) as pipeline:
    beam_pipeline.build_pipeline(pipeline, sys.argv[1], Tokenizer(sys.argv[2]), sys.argv[3], 128,
                                 shards=4, mode="next_sentence")
print(json.dumps({}))
"""


def _run(command, env=None):
    """Runs `command`; returns (wall s, CPU s of it and its children, its JSON line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(done.stdout.strip().splitlines()[-1])


def _env():
    env = dict(os.environ, PYTHONPATH=_REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return env


def _ours(corpus, spm_model, out, workers):
    shutil.rmtree(out, ignore_errors=True)
    return _run([sys.executable, "-c", _OURS, corpus, spm_model, out, str(workers)], _env())


def _scratch_files(scratch, copies):
    """The 8k model, the corpus of `copies` Austen texts, and the reference's input and vocabulary."""
    spm_model = FLAGS.spm_model or os.path.join(scratch, "austen8k.model")
    if not os.path.exists(spm_model):
        train_sentencepiece([_AUSTEN], spm_model[:-len(".model")], vocab_size=8000)
    with open(_AUSTEN, "rb") as f:
        austen = f.read()
    corpus = os.path.join(scratch, f"austen_x{copies}.txt")
    if not os.path.exists(corpus):
        with open(corpus, "wb") as f:
            for _ in range(copies):
                f.write(austen + b"\n\n")
    reference_input = os.path.join(scratch, f"austen_sentences_x{copies}.txt")
    if not os.path.exists(reference_input):
        stats = text_input.TextStats()
        one = "".join("\n".join(doc) + "\n\n" for doc in text_input.read_documents([_AUSTEN], stats) if doc)
        with open(reference_input, "w", encoding="utf-8") as f:
            for _ in range(copies):
                f.write(one)
    vocab = os.path.join(scratch, "wordpiece8k.txt")
    if not os.path.exists(vocab):
        tokenizer = Tokenizer(spm_model)
        pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        seen = set(pieces)
        for i in range(5, tokenizer.vocab_size):
            piece = tokenizer.id_to_piece(i)
            word = piece[1:] if piece.startswith(WORD_START) else "##" + piece
            if word and word not in seen:
                seen.add(word)
                pieces.append(word)
        with open(vocab, "w", encoding="utf-8") as f:
            f.write("\n".join(pieces) + "\n")
    return spm_model, corpus, reference_input, vocab


def bench_packer():
    """Packer tokens/s, native against the Python twin, per mode; returns the RESULTS table."""
    from research.data import record_shards  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as scratch:
        spm_model = FLAGS.spm_model or train_sentencepiece([FLAGS.input], os.path.join(scratch, "bench"),
                                                           vocab_size=8000)
        tokenizer = Tokenizer(spm_model)
    layout = record_shards.BucketLayout.plan(1, 1, 1, 0.0, 1 << 30)
    settings = record_shards.BuildSettings(tokenizer, text_input.DocumentBoundary(), layout, FLAGS.seq_len,
                                           "full_sentences", 0, 0.0, 0.1)
    blocks = list(text_input.read_blocks([FLAGS.input], settings.boundary, 1 << 30))
    docs = record_shards.Documents.concatenate(
        d for block in blocks for d in record_shards.tokenize_block(block, settings)[0].values())
    tokens = docs.tokens.astype(np.int32)
    sentence_offsets = np.concatenate([[0], np.cumsum(docs.sentence_lengths, dtype=np.int64)])
    document_offsets = np.concatenate([[0], np.cumsum(docs.num_sentences, dtype=np.int64)])
    print(f"corpus: {FLAGS.input}: {len(docs.keys)} documents, {len(docs.sentence_lengths)} sentences, "
          f"{len(tokens)} tokens; seq_len {FLAGS.seq_len}")
    table = ["| mode | native median s | Python median s | native Mtokens/s | ratio (min) | ratio (median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode in MODES:
        times = {}
        results = {}
        for backend, repeats in (("native", FLAGS.native_repeats), ("python", FLAGS.python_repeats)):
            times[backend] = []
            for _ in range(repeats):
                start = time.perf_counter()
                results[backend] = pack_examples(tokens, sentence_offsets, document_offsets, FLAGS.seq_len,
                                                 mode, seed=1, backend=backend)
                times[backend].append(time.perf_counter() - start)
        assert results["native"][1] == results["python"][1] and all(
            np.array_equal(results["native"][0][k], results["python"][0][k]) for k in results["native"][0])
        native, python = statistics.median(times["native"]), statistics.median(times["python"])
        line = (f"| {mode} | {native:.4f} | {python:.4f} | {len(tokens) / native / 1e6:.0f} | "
                f"{min(times['python']) / min(times['native']):.0f}x | {python / native:.0f}x |")
        print(line)
        table.append(line)
    return (f"corpus {os.path.basename(FLAGS.input)}, {len(tokens)} tokens, seq_len {FLAGS.seq_len}; "
            "target: native >= 20x the Python twin.\n\n" + "\n".join(table))


def bench_reference(scratch):
    spm_model, corpus, reference_input, vocab = _scratch_files(scratch, FLAGS.copies)
    size_mb = os.path.getsize(corpus) / 1e6
    ours, reference = [], []
    for run in range(FLAGS.reference_runs + 1):
        wall, cpu, info = _ours(corpus, spm_model, os.path.join(scratch, "ours"), 1)
        ours.append((wall, cpu, info))
        print(f"ours       run {run}: {wall:7.1f} s wall, {cpu:7.1f} s CPU, {info['tokens'] / wall:,.0f} tokens/s, "
              f"peak RSS {info['main_rss_kb'] / 1024:.0f} MB", flush=True)
        if run == FLAGS.reference_runs:
            break
        out = os.path.join(scratch, "reference.tfrecord")
        wall, cpu, info_ref = _run([sys.executable, "-c", _REFERENCE, FLAGS.bert_path, reference_input, out,
                                    vocab], _env())
        reference.append((wall, cpu, info_ref))
        print(f"reference  run {run}: {wall:7.1f} s wall ({info_ref['import_s']:.1f} s importing TensorFlow), "
              f"{cpu:7.1f} s CPU, {info['tokens'] / wall:,.0f} tokens/s, peak RSS "
              f"{info_ref['main_rss_kb'] / 1024:.0f} MB", flush=True)
    tokens = ours[0][2]["tokens"]
    best_ours = min(w for w, _, _ in ours)
    best_ref = min(w for w, _, _ in reference)
    ref_import = min(i["import_s"] for _, _, i in reference)
    cpu_ratio = min(c for _, c, _ in reference) / min(c for _, c, _ in ours)
    text = (f"Corpus: the shipped Austen text x{FLAGS.copies} ({size_mb:.0f} MB, repeated text: fine for "
            f"throughput), {tokens:,} tokens (our 8k sentencepiece), next_sentence vs dupe_factor 1, seq 128, "
            f"one process each, alternated (ours, reference, ours).\n\n"
            "| | whole run, best (s) | CPU s, best | input tokens/s | peak RSS MB |\n|---|---:|---:|---:|---:|\n"
            f"| ours (`--workers=1`) | {best_ours:.1f} | {min(c for _, c, _ in ours):.1f} | "
            f"{tokens / best_ours:,.0f} | {max(i['main_rss_kb'] for _, _, i in ours) / 1024:.0f} |\n"
            f"| google-research/bert create_pretraining_data.py | {best_ref:.1f} (import {ref_import:.1f}) | "
            f"{min(c for _, c, _ in reference):.1f} | {tokens / best_ref:,.0f} | "
            f"{max(i['main_rss_kb'] for _, _, i in reference) / 1024:.0f} |\n\n"
            f"Ratio, whole run (wall): **{best_ref / best_ours:.1f}x**; CPU time: {cpu_ratio:.1f}x; "
            f"without the reference's TensorFlow import: {(best_ref - ref_import) / best_ours:.1f}x "
            "(target: 30x).")
    print(text)
    return text


def bench_workers(scratch):
    spm_model, corpus, _, _ = _scratch_files(scratch, FLAGS.copies)
    runs = {1: [], 2: []}
    for _ in range(FLAGS.repeats):
        for workers in (1, 2):
            wall, cpu, info = _ours(corpus, spm_model, os.path.join(scratch, "ours"), workers)
            runs[workers].append((wall, cpu, info))
            print(f"workers={workers}: {wall:.1f} s wall, {cpu:.1f} s CPU, {info['tokens'] / wall:,.0f} tokens/s, "
                  f"peak RSS main {info['main_rss_kb'] / 1024:.0f} MB, worker {info['worker_rss_kb'] / 1024:.0f} MB",
                  flush=True)
    tokens = runs[1][0][2]["tokens"]
    best = {w: min(r[0] for r in runs[w]) for w in runs}
    text = (f"Corpus: Austen x{FLAGS.copies} ({os.path.getsize(corpus) / 1e6:.0f} MB, {tokens:,} tokens), "
            f"next_sentence, 4 shards; {FLAGS.repeats} runs each, alternated.\n\n"
            "| workers | best wall s | median wall s | tokens/s (best) |\n|---:|---:|---:|---:|\n" +
            "".join(f"| {w} | {best[w]:.1f} | {statistics.median(r[0] for r in runs[w]):.1f} | "
                    f"{tokens / best[w]:,.0f} |\n" for w in runs) +
            f"\n2 workers / 1 worker: **{best[1] / best[2]:.2f}x** (best), "
            f"{statistics.median(r[0] for r in runs[1]) / statistics.median(r[0] for r in runs[2]):.2f}x "
            "(median); target 1.7x.")
    print(text)
    return text


def bench_rss(scratch):
    rows = []
    for copies in (FLAGS.copies, 10 * FLAGS.copies):
        spm_model, corpus, _, _ = _scratch_files(scratch, copies)
        wall, _, info = _ours(corpus, spm_model, os.path.join(scratch, "ours"), 2)
        rows.append(f"| {os.path.getsize(corpus) / 1e9:.2f} GB | {info['main_rss_kb'] / 1024:.0f} | "
                    f"{info['worker_rss_kb'] / 1024:.0f} | {wall:.0f} |")
        print(rows[-1], flush=True)
        if copies != FLAGS.copies:
            os.remove(corpus)
    text = ("Peak RSS (ru_maxrss) of the builder, `--workers=2`, next_sentence, 4 shards, Austen repeated; "
            "the whole job peaks at most at main + 2 x worker.\n\n| input | main MB | largest worker MB | wall s |\n"
            "|---:|---:|---:|---:|\n" + "\n".join(rows))
    print(text)
    return text


def _encode_all(tokenizers, blocks):
    """Seconds to encode every block (block i with tokenizers[i % len]) and the caches' hit rate."""
    before = [t._unigram.cache_stats() for t in tokenizers]  # pylint: disable=protected-access
    start = time.perf_counter()
    for i, sentences in enumerate(blocks):
        tokenizers[i % len(tokenizers)].encode_flat(sentences, num_threads=1)
    seconds = time.perf_counter() - start
    after = [t._unigram.cache_stats() for t in tokenizers]  # pylint: disable=protected-access
    hits = sum(a["hits"] - b["hits"] for a, b in zip(after, before))
    misses = sum(a["misses"] - b["misses"] for a, b in zip(after, before))
    return seconds, hits / max(1, hits + misses)


def bench_encoder(scratch):
    spm_model, corpus, _, _ = _scratch_files(scratch, FLAGS.copies)
    boundary = text_input.DocumentBoundary()
    blocks = [text_input.split_documents(block, boundary, text_input.TextStats())[1]
              for block in text_input.read_blocks([corpus], boundary, 4 << 20)]
    tokenizer = Tokenizer(spm_model)
    sentencepiece = tokenizer._sp  # pylint: disable=protected-access
    if tokenizer._unigram is None:  # pylint: disable=protected-access
        raise app.UsageError(f"{spm_model} is not a model the native encoder takes (see unigram_encoder.py)")
    best = {}
    for _ in range(FLAGS.repeats + 1):
        one = _encode_all([Tokenizer(spm_model)], blocks)
        fresh = _encode_all([Tokenizer(spm_model) for _ in blocks], blocks)
        start = time.perf_counter()
        for sentences in blocks:
            _native.flatten_ids(sentencepiece.encode(sentences, num_threads=1))
        reference = (time.perf_counter() - start, None)
        for name, (seconds, hit_rate) in (("one cache", one), ("fresh cache per block", fresh),
                                          ("sentencepiece", reference)):
            best[name] = (min(seconds, best.get(name, (seconds,))[0]), hit_rate)
        print({name: f"{seconds:.3f} s" for name, (seconds, _) in best.items()}, flush=True)
    text = (f"Austen x{FLAGS.copies} ({os.path.getsize(corpus) / 1e6:.0f} MB) in {len(blocks)} blocks "
            f"({os.path.getsize(corpus) / len(blocks) / 1e6:.1f} MB each on average: read_blocks asked for 4 MB), "
            f"one thread, best of {FLAGS.repeats + 1} alternated.\n\n"
            "| encoder | seconds | word cache hit rate | vs sentencepiece |\n|---|---:|---:|---:|\n" +
            "".join(f"| {name} | {seconds:.3f} | {'-' if rate is None else f'{rate:.1%}'} | "
                    f"{best['sentencepiece'][0] / seconds:.1f}x |\n" for name, (seconds, rate) in best.items()))
    print(text)
    return text


def bench_beam(scratch):
    spm_model, corpus, _, _ = _scratch_files(scratch, FLAGS.beam_copies)
    wall_local, _, info = _ours(corpus, spm_model, os.path.join(scratch, "ours"), 2)
    out = os.path.join(scratch, "beam")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    wall_beam, _, _ = _run([FLAGS.beam_python, "-c", _BEAM, corpus, spm_model, out], _env())
    wall_local_2, _, _ = _ours(corpus, spm_model, os.path.join(scratch, "ours"), 2)
    tokens = info["tokens"]
    same = all(open(os.path.join(out, n), "rb").read() == open(os.path.join(scratch, "ours", n), "rb").read()
               for n in os.listdir(out) if n.endswith(".tfrecord"))
    best_local = min(wall_local, wall_local_2)
    text = (f"Austen x{FLAGS.beam_copies} ({os.path.getsize(corpus) / 1e6:.0f} MB, {tokens:,} tokens), next_sentence, "
            f"4 shards, 2 workers each (Beam: DirectRunner, multi_processing), alternated local, Beam, local.\n\n"
            f"| | wall s | tokens/s |\n|---|---:|---:|\n| local builder (best) | {best_local:.1f} | "
            f"{tokens / best_local:,.0f} |\n| Beam DirectRunner | {wall_beam:.1f} | {tokens / wall_beam:,.0f} |\n\n"
            f"Beam / local rate: {best_local / wall_beam:.2f}x; identical records: {same}.")
    print(text)
    return text


def main(argv):
    del argv  # unused
    sections = {}
    scratch = FLAGS.scratch or tempfile.mkdtemp(prefix="data_bench_")
    os.makedirs(scratch, exist_ok=True)
    for bench in FLAGS.bench:
        if bench == "packer":
            sections["Packer (benchmarks/data_bench.py)"] = bench_packer()
        elif bench == "reference":
            if not FLAGS.bert_path:
                raise app.UsageError("--bench=reference needs --bert_path (pip install --no-deps "
                                     "--target=DIR bert-tensorflow==1.0.4)")
            sections["Record builder against google-research/bert (data_bench.py --bench=reference)"] = \
                bench_reference(scratch)
        elif bench == "workers":
            sections["Record builder, 1 and 2 workers (data_bench.py --bench=workers)"] = bench_workers(scratch)
        elif bench == "rss":
            sections["Record builder peak RSS (data_bench.py --bench=rss)"] = bench_rss(scratch)
        elif bench == "beam":
            if not FLAGS.beam_python:
                raise app.UsageError("--bench=beam needs --beam_python (a Python with apache-beam)")
            sections["Record builder on Apache Beam (data_bench.py --bench=beam)"] = bench_beam(scratch)
        elif bench == "encoder":
            sections["Unigram encoder and its word cache (data_bench.py --bench=encoder)"] = bench_encoder(scratch)
        else:
            raise app.UsageError(f"unknown --bench {bench!r}; expected packer, reference, workers, rss, beam, "
                                 "encoder")
    if FLAGS.write_results:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=_REPO, check=False).stdout.strip()
        context = (f"{_report.machine_description()}; commit {commit}; `python benchmarks/data_bench.py "
                   f"{' '.join(sys.argv[1:])}`; the host was shared with other engineers' jobs (load "
                   f"average {os.getloadavg()[0]:.1f} at the end). ")
        for title, text in sections.items():
            _report.write_section(title, context + text)


if __name__ == "__main__":
    app.run(main)
