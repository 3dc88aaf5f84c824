"""Masking throughput inside tf.data: native kernel vs reference twin vs tensorflow_text.

Each configuration streams batches of padded ids (a random real length per row, as in packed and
unpacked records) through `dataset.map(mask)` with a fresh seed per batch and counts examples per
second: best and median of repeated runs after a warm-up. Targets: native >= 10x the reference and
>= 20x tensorflow_text's `mask_language_model` (timed only where tensorflow_text is installed).

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


def implementations(max_predictions):
    found = {"native": native_or_reference("native", max_predictions),
             "reference": native_or_reference("reference", max_predictions)}
    try:
        found["tensorflow_text"] = tensorflow_text_masker(max_predictions)
    except ImportError:
        print("tensorflow_text is not installed: its column is skipped")
    return found


def measure(mask, ids, seconds, repeats):
    """(best, median) examples/s of runs sized to last about `seconds` each.

    The consuming loop is one traced function, so a run costs its batches only: tracing
    `Dataset.reduce` anew per run (milliseconds) would weigh most on the fastest implementation."""
    def timed_run(batches):
        dataset = tf.data.Dataset.from_tensors(ids).repeat(batches).enumerate().map(
            mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

        @tf.function
        def consume():  # in C++, as a training loop would, so Python iteration costs nothing
            return dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)

        return lambda: consume().numpy()

    probe_batches = 8
    probe = _report.time_runs(timed_run(probe_batches), 1)[0]
    batches = max(probe_batches, int(seconds * probe_batches / probe))
    return _report.rate_summary(ids.shape[0] * batches, _report.time_runs(timed_run(batches), repeats))


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
        native_median = results["native"][1]
        for name, (best, median) in results.items():
            lines.append(f"| {batch}x{seq_len} | {name} | {best:.0f} | {median:.0f} | {native_median / median:.1f}x |")
    table = "\n".join(lines)
    print(table)
    if _WRITE.value:
        _report.write_section("Masking (benchmarks/masking_bench.py)",
                              f"{_report.machine_description()}; targets: native >= 10x reference, >= 20x "
                              f"tensorflow_text.\n\n{table}")


if __name__ == "__main__":
    app.run(main)
