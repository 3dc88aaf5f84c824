"""Packer throughput: the native (C++) packer against its pure Python twin, in tokens/s.

    python benchmarks/data_bench.py [--input=third_party/austen/austen.txt] [--spm_model=PATH] [--write_results]

Tokenizes the corpus once (training an 8k sentencepiece model into a temporary directory when no
--spm_model is given), then times `pack_examples` in every mode with each backend, several times,
and prints the min and median seconds, the median tokens/s and the native/Python speed ratios of
the min and of the median times (target: at least 20x). The native times are a few milliseconds, so
their median carries the page faults of fresh output arrays and the noise of a busy machine. Both backends are checked to give the same examples.
"""
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from research.data import build_pretraining_data as bpd
from research.data.packing import MODES, pack_examples
from research.data.tokenizer import Tokenizer, train_sentencepiece

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("input", os.path.join(_REPO, "third_party", "austen", "austen.txt"),
                    "Text corpus (blank lines separate documents).")
flags.DEFINE_string("spm_model", None, "SentencePiece model; trained on --input when unset.")
flags.DEFINE_integer("seq_len", 128, "Example length.")
flags.DEFINE_integer("native_repeats", 7, "Timed runs of the native packer per mode.")
flags.DEFINE_integer("python_repeats", 3, "Timed runs of the Python packer per mode.")
flags.DEFINE_bool("write_results", False, "Update the packer section of benchmarks/RESULTS.md.")
FLAGS = flags.FLAGS


def _time(corpus, mode, backend, repeats):
    """Returns (seconds of each run, the last result) of packing `corpus` in `mode`."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = pack_examples(corpus.token_ids, corpus.sentence_offsets, corpus.document_offsets,
                               FLAGS.seq_len, mode, seed=1, backend=backend)
        seconds.append(time.perf_counter() - start)
    return seconds, result


def main(argv):
    del argv  # unused
    with tempfile.TemporaryDirectory() as scratch:
        spm_model = FLAGS.spm_model or train_sentencepiece(
            [FLAGS.input], os.path.join(scratch, "bench"), vocab_size=8000)
        corpus = bpd.tokenize_documents(
            bpd.read_documents([FLAGS.input], bpd.TextStats()),
            Tokenizer(spm_model))
    print(f"corpus: {FLAGS.input}: {corpus.num_documents} documents, "
          f"{len(corpus.sentence_offsets) - 1} sentences, {corpus.num_tokens} tokens; "
          f"seq_len {FLAGS.seq_len}")
    print(f"{'mode':<15} {'backend':<7} {'min s':>8} {'median s':>9} {'Mtokens/s':>10} "
          f"{'ratio min':>10} {'ratio median':>13}")
    table = ["| mode | native median s | Python median s | native Mtokens/s | ratio (min) | ratio (median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode in MODES:
        native_s, native = _time(corpus, mode, "native", FLAGS.native_repeats)
        python_s, python = _time(corpus, mode, "python", FLAGS.python_repeats)
        assert native[1] == python[1] and all(
            np.array_equal(native[0][k], python[0][k]) for k in native[0]), mode
        ratios = (f"{min(python_s) / min(native_s):>9.0f}x "
                  f"{statistics.median(python_s) / statistics.median(native_s):>12.0f}x")
        for backend, seconds in (("native", native_s), ("python", python_s)):
            median = statistics.median(seconds)
            print(f"{mode:<15} {backend:<7} {min(seconds):>8.4f} {median:>9.4f} "
                  f"{corpus.num_tokens / median / 1e6:>10.2f} {ratios if backend == 'native' else ''}")
        native_median, python_median = statistics.median(native_s), statistics.median(python_s)
        table.append(f"| {mode} | {native_median:.4f} | {python_median:.4f} | "
                     f"{corpus.num_tokens / native_median / 1e6:.0f} | {min(python_s) / min(native_s):.0f}x | "
                     f"{python_median / native_median:.0f}x |")
    if FLAGS.write_results:
        _report.write_section(
            "Packer (benchmarks/data_bench.py)",
            f"{_report.machine_description()}; corpus {os.path.basename(FLAGS.input)}, {corpus.num_tokens} tokens, "
            f"seq_len {FLAGS.seq_len}; target: native >= 20x the Python twin.\n\n" + "\n".join(table))


if __name__ == "__main__":
    app.run(main)
