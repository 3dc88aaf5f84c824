"""Masking throughput inside tf.data: native kernel vs reference twin vs tensorflow_text.

Each configuration streams batches of padded ids (a random real length per row, as in packed and
unpacked records) through `dataset.map(mask)` with a fresh seed per batch and counts examples per
second: best and median of repeated runs after a warm-up. Targets: native >= 10x the reference and
>= 20x tensorflow_text's `mask_language_model` (timed only where tensorflow_text is installed). A map
that masks nothing measures the pipeline's own ceiling (tf.data's per-batch cost), which bounds every
ratio at small batches; the native and reference ops are also timed alone, in a traced loop.

    python benchmarks/masking_bench.py [--repeats=5] [--seconds=0.5] [--write_results]
"""
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, str(Path(__file__).parent))
import _report  # noqa: E402

from research import ops  # noqa: E402
from research.data.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID  # noqa: E402

_REPEATS = flags.DEFINE_integer("repeats", 5, "timed runs per configuration and implementation")
_SECONDS = flags.DEFINE_float("seconds", 0.5, "approximate duration of each timed run")
_WRITE = flags.DEFINE_bool("write_results", False, "update the masking section of benchmarks/RESULTS.md")

VOCAB = 30522
SPECIALS = [PAD_ID, UNK_ID, CLS_ID, SEP_ID]
CONFIGS = [(32, 128, 20), (256, 512, 76)]  # batch, seq_len, max_predictions_per_seq


def make_ids(batch, seq_len, seed=0):
    """int32 [batch, seq_len]: [CLS] random ids [SEP] and padding, real length uniform in [seq_len/2, seq_len]."""
    rng = np.random.RandomState(seed)
    ids = np.full([batch, seq_len], PAD_ID, np.int32)
    for row in range(batch):
        length = rng.randint(seq_len // 2, seq_len + 1)
        ids[row, :length] = rng.randint(5, VOCAB, size=length)
        ids[row, 0], ids[row, length - 1] = CLS_ID, SEP_ID
    return ids


def native_or_reference(backend, max_predictions):
    def mask(step, ids):
        return ops.mask_tokens(ids, tf.stack([tf.constant(1, tf.int64), step]), vocab_size=VOCAB,
                               mask_token_id=MASK_ID, special_token_ids=SPECIALS,
                               max_predictions_per_seq=max_predictions, backend=backend)
    return mask


def tensorflow_text_masker(max_predictions):
    import tensorflow_text as text
    selector = text.RandomItemSelector(max_selections_per_batch=max_predictions, selection_rate=0.15,
                                       unselectable_ids=SPECIALS)
    chooser = text.MaskValuesChooser(VOCAB, MASK_ID, 0.8)

    def mask(step, ids):
        del step
        ragged = tf.RaggedTensor.from_tensor(ids, padding=PAD_ID)
        masked, positions, masked_ids = text.mask_language_model(ragged, item_selector=selector,
                                                                 mask_values_chooser=chooser)
        return {"input_word_ids": masked.to_tensor(shape=tf.shape(ids)),
                "masked_lm_positions": positions.to_tensor(shape=[None, max_predictions]),
                "masked_lm_ids": masked_ids.to_tensor(shape=[None, max_predictions])}
    return mask


def no_masking(max_predictions):
    """The pipeline's own ceiling: a map that returns outputs of the right shapes without masking."""
    def mask(step, ids):
        del step
        head = ids[:, :max_predictions]
        return {"input_word_ids": ids, "masked_lm_positions": head, "masked_lm_ids": head,
                "masked_lm_weights": tf.cast(head, tf.float32)}
    return mask


def implementations(max_predictions):
    found = {"no masking (pipeline ceiling)": no_masking(max_predictions),
             "native": native_or_reference("native", max_predictions),
             "reference": native_or_reference("reference", max_predictions)}
    try:
        found["tensorflow_text"] = tensorflow_text_masker(max_predictions)
    except ImportError:
        print("tensorflow_text is not installed: its column is skipped")
    return found


def measure(mask, ids, seconds, repeats):
    """(best, median) steady examples/s, from runs of about `seconds` each on one long-lived iterator.

    A training loop keeps one iterator for the whole run, so neither the iterator's setup (a quarter of
    a second for tensorflow_text's ragged map function) nor tracing counts: batches are pulled from the
    same iterator by one traced loop, after a warm-up that also lets tf.data's autotuning settle."""
    dataset = tf.data.Dataset.from_tensors(ids).repeat().enumerate().map(
        mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    iterator = iter(dataset)

    @tf.function
    def consume(batches):
        for _ in tf.range(batches):
            next(iterator)

    probe_batches = tf.constant(8)
    probe = _report.time_runs(lambda: consume(probe_batches), 2)[-1]
    batches = max(8, int(seconds * 8 / probe))
    durations = _report.time_runs(lambda: consume(tf.constant(batches)), repeats)
    return _report.rate_summary(ids.shape[0] * batches, durations)


def measure_op_alone(mask, ids, seconds, repeats):
    """(best, median) examples/s of the masking op alone, called in a traced loop (no tf.data)."""
    ids = tf.constant(ids)

    @tf.function
    def loop(batches):
        checksum = tf.constant(0, tf.int32)
        for step in tf.range(batches):
            checksum += mask(tf.cast(step, tf.int64), ids)["masked_lm_positions"][0, 0]
        return checksum

    probe = _report.time_runs(lambda: loop(tf.constant(4)).numpy(), 1)[0]
    batches = max(4, int(seconds * 4 / probe))
    durations = _report.time_runs(lambda: loop(tf.constant(batches)).numpy(), repeats)
    return _report.rate_summary(ids.shape[0] * batches, durations)


def main(argv):
    del argv
    header = "| batch x seq_len | implementation | examples/s best | examples/s median | native / this (median) |"
    lines = [header, "|---|---|---:|---:|---:|"]
    for batch, seq_len, max_predictions in CONFIGS:
        ids = make_ids(batch, seq_len)
        results = {}
        for name, mask in implementations(max_predictions).items():
            results[name] = measure(mask, ids, _SECONDS.value, _REPEATS.value)
            print(f"{batch}x{seq_len} {name}: best {results[name][0]:.0f} ex/s, median {results[name][1]:.0f} ex/s",
                  flush=True)
        for backend in ("native", "reference"):
            name = f"{backend}, op alone (no tf.data)"
            results[name] = measure_op_alone(native_or_reference(backend, max_predictions), ids, _SECONDS.value,
                                             _REPEATS.value)
            print(f"{batch}x{seq_len} {name}: best {results[name][0]:.0f} ex/s, median {results[name][1]:.0f} ex/s",
                  flush=True)
        native_median = results["native"][1]
        for name, (best, median) in results.items():
            baseline = results["native, op alone (no tf.data)"][1] if "op alone" in name else native_median
            lines.append(f"| {batch}x{seq_len} | {name} | {best:.0f} | {median:.0f} | {baseline / median:.1f}x |")
    table = "\n".join(lines)
    print(table)
    if _WRITE.value:
        _report.write_section("Masking (benchmarks/masking_bench.py)",
                              f"{_report.machine_description()}; targets: native >= 10x reference, >= 20x "
                              "tensorflow_text. Steady rates: one iterator per implementation, batches pulled by "
                              "a traced loop, runs of about "
                              f"{_SECONDS.value:g} s after a warm-up ({_REPEATS.value} runs). The *no masking* row "
                              "is the same pipeline with a map that masks nothing: no masking kernel can beat it. "
                              "The *op alone* rows call the op in a traced loop without tf.data (their ratio is "
                              "native op / this)."
                              f"\n\n{table}")


if __name__ == "__main__":
    app.run(main)
