"""The demo's quality next to trivial baselines: held-out masked-LM accuracy vs always predicting the
most frequent token, fine-tuned accuracy vs the majority class.

Run the two demo experiments first (the README's first command), then:

    python benchmarks/demo_quality.py [--pretrain_dir=runs/demo_pretrain] [--finetune_dir=runs/demo_finetune]
        [--write_results]

Targets: masked-LM accuracy >= 3x the unigram baseline; fine-tuned accuracy >= 0.70.
"""
import collections
import glob
import os
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from research.data import classification_input, demo_data, features  # noqa: E402
from research.data.tokenizer import SPECIAL_TOKENS  # noqa: E402

_PRETRAIN_DIR = flags.DEFINE_string("pretrain_dir", "runs/demo_pretrain", "model_dir of demo_pretrain.gin")
_FINETUNE_DIR = flags.DEFINE_string("finetune_dir", "runs/demo_finetune", "model_dir of demo_finetune.gin")
_CACHE_DIR = flags.DEFINE_string("cache_dir", demo_data.DEFAULT_CACHE_DIR, "the demo's data cache")
_WRITE = flags.DEFINE_bool("write_results", False, "update the demo section of benchmarks/RESULTS.md")


def token_counts(pattern: str) -> collections.Counter:
    """Counts of the non-special ids in the records matching `pattern`."""
    counts = collections.Counter()
    spec = {features.INPUT_WORD_IDS: tf.io.VarLenFeature(tf.int64)}
    for record in tf.data.TFRecordDataset(sorted(glob.glob(pattern))):
        ids = tf.io.parse_single_example(record, spec)[features.INPUT_WORD_IDS].values.numpy()
        counts.update(ids[ids >= len(SPECIAL_TOKENS)].tolist())
    return counts


def unigram_baseline(cache_dir: str) -> tuple[float, int]:
    """Accuracy on held-out tokens of always predicting the most frequent training token, and that token."""
    train = token_counts(demo_data.demo_pretraining_records("train", cache_dir))
    validation = token_counts(demo_data.demo_pretraining_records("validation", cache_dir))
    most_frequent = train.most_common(1)[0][0]
    return validation[most_frequent] / sum(validation.values()), most_frequent


def majority_baseline() -> float:
    """Accuracy of the majority training class on the demo's held-out movie-review split."""
    examples = classification_input.read_examples(demo_data.demo_movie_reviews(), num_classes=2)
    train, validation = classification_input.split_examples(examples, 0.2, seed=0)
    majority = collections.Counter(e.label for e in train).most_common(1)[0][0]
    return float(np.mean([e.label == majority for e in validation]))


def last_eval_metric(model_dir: str, name: str) -> tuple[float, int] | None:
    """(value, step) of the last `name` scalar in model_dir/eval, or None."""
    found = None
    for path in sorted(glob.glob(os.path.join(model_dir, "eval", "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == name:
                    found = (float(tf.make_ndarray(value.tensor)), event.step)
    return found


def main(argv):
    del argv
    unigram, token = unigram_baseline(_CACHE_DIR.value)
    majority = majority_baseline()
    mlm = last_eval_metric(_PRETRAIN_DIR.value, "masked_lm_accuracy")
    finetune = last_eval_metric(_FINETUNE_DIR.value, "accuracy")
    lines = ["| measure | ours | baseline | ratio |", "|---|---:|---:|---:|"]
    if mlm:
        lines.append(f"| held-out masked-LM accuracy (step {mlm[1]}) | {mlm[0]:.4f} | {unigram:.4f} (token id {token}) "
                     f"| {mlm[0] / unigram:.2f}x |")
    else:
        lines.append(f"| held-out masked-LM accuracy | not found in {_PRETRAIN_DIR.value}/eval | {unigram:.4f} | |")
    if finetune:
        lines.append(f"| movie-review accuracy, 20% held out (step {finetune[1]}) | {finetune[0]:.4f} | "
                     f"{majority:.4f} (majority class) | {finetune[0] / majority:.2f}x |")
    else:
        lines.append(f"| movie-review accuracy | not found in {_FINETUNE_DIR.value}/eval | {majority:.4f} | |")
    table = "\n".join(lines)
    print(table)
    if _WRITE.value:
        _report.write_section("Demo quality (benchmarks/demo_quality.py)",
                              f"{_report.machine_description()}; targets: masked-LM accuracy >= 3x the unigram "
                              f"baseline, fine-tuned accuracy >= 0.70.\n\n{table}")


if __name__ == "__main__":
    app.run(main)
