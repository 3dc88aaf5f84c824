"""Training-step speed of two source trees of this project, alternated in one run: did a change slow the step?

    python benchmarks/ab_trees.py --tree_a /path/to/old/checkout --tree_b . --config mlm --precision float32

Each round runs one worker process per tree (the order alternates between rounds, so that a busy machine
penalizes both sides alike); a worker imports `research` from its tree, builds a BERT-small-sized model and
task, and times `task.train_step` in tf.function on one fixed random batch after a warmup. It prints each
round's examples/s and the ratio B/A, then the median ratio (> 1: B is faster). Configs: 'mlm'
(MaskedLMTask, BertPretrainer with masked_positions_only, the fused head) and 'classifier'
(SentencePredictionTask, BertClassifier with the encoder's pooler). Both trees need kernels built for the
installed TensorFlow.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

_WORKER = r'''
import json, sys, time
import numpy as np
import tensorflow as tf
import keras
from research import modeling
from research.core import optimization
config, precision, steps, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keras.mixed_precision.set_global_policy(optimization.RuntimeConfig(mixed_precision_dtype=precision).policy_name)
BATCH, SEQ, P, VOCAB = 32, 128, 20, 30522
def encoder():
    return modeling.BertEncoder(vocab_size=VOCAB, hidden_size=256, num_layers=4, num_attention_heads=4,
                                intermediate_size=1024, max_sequence_length=SEQ, type_vocab_size=2)
rng = np.random.RandomState(0)
batch = {"input_word_ids": tf.constant(rng.randint(5, VOCAB, (BATCH, SEQ)), tf.int32),
         "input_mask": tf.ones((BATCH, SEQ), tf.int32), "input_type_ids": tf.zeros((BATCH, SEQ), tf.int32)}
if config == "mlm":
    from research.tasks import masked_lm
    batch.update(masked_lm_positions=tf.constant(np.sort(rng.choice(SEQ, (BATCH, P)), -1), tf.int32),
                 masked_lm_ids=tf.constant(rng.randint(5, VOCAB, (BATCH, P)), tf.int32),
                 masked_lm_weights=tf.ones((BATCH, P), tf.float32))
    data = masked_lm.PretrainDataConfig(input_path="unused", seq_len=SEQ, vocab_size=VOCAB, max_predictions_per_seq=P)
    task = masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(
        model=lambda: modeling.BertPretrainer(encoder(), masked_positions_only=True), train_data=data, scale_loss=True))
else:
    from research.tasks import sentence_prediction
    batch["label"] = tf.constant(rng.randint(0, 2, (BATCH,)), tf.int32)
    data = sentence_prediction.ClassificationDataConfig(input_path="unused", spm_model="unused", seq_len=SEQ)
    task = sentence_prediction.SentencePredictionTask(sentence_prediction.SentencePredictionConfig(
        model=lambda: modeling.BertClassifier(encoder(), num_classes=2), train_data=data))
model = task.build_model()
optimizer = task.create_optimizer(optimization.OptimizerConfig(learning_rate=1e-4, warmup_steps=0, decay_steps=10000),
                                  optimization.RuntimeConfig(mixed_precision_dtype=precision))
step = tf.function(lambda inputs: task.train_step(inputs, model, optimizer))
for _ in range(warmup):
    float(step(batch)[task.loss])
start = time.perf_counter()
for _ in range(steps):
    loss = step(batch)[task.loss]
float(loss)
print(json.dumps({"examples_per_s": steps * BATCH / (time.perf_counter() - start)}))
'''


def run_worker(tree, args):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", _WORKER, args.config, args.precision, str(args.steps),
                          str(args.warmup)], env=env, capture_output=True, text=True, check=False, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"worker on {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["examples_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree_a", required=True, help="the baseline tree (its research/ is imported)")
    parser.add_argument("--tree_b", required=True, help="the changed tree")
    parser.add_argument("--config", choices=("mlm", "classifier"), default="mlm")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    for tree in (args.tree_a, args.tree_b):
        if not os.path.isdir(os.path.join(tree, "research")):
            parser.error(f"{tree} has no research/ package")
    ratios = []
    for round_index in range(args.rounds):
        order = [("A", args.tree_a), ("B", args.tree_b)]
        if round_index % 2:
            order.reverse()
        rates = {}
        for name, tree in order:
            rates[name] = run_worker(tree, args)
            print(f"round {round_index + 1}/{args.rounds}: {name} {rates[name]:.1f} examples/s", flush=True)
        ratios.append(rates["B"] / rates["A"])
        print(f"round {round_index + 1}: B/A = {ratios[-1]:.3f}", flush=True)
    print(f"{args.config} {args.precision}: median B/A = {statistics.median(ratios):.3f} over {args.rounds} rounds "
          f"(ratios {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
