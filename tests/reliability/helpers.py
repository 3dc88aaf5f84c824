"""Shared by the reliability tests: records carrying an example id, and research.main in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from research.data import features

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("_driver.py")
VOCAB = 200
SEQ_LEN = 16
BATCH = 4
# A tiny BERT through the real experiment file; dropout stays on (0.1) so that its RNG state must resume too.
TINY = ["modeling.BertEncoder.hidden_size = 16", "modeling.BertEncoder.num_layers = 1",
        "modeling.BertEncoder.num_attention_heads = 2", "modeling.BertEncoder.intermediate_size = 32",
        f"VOCAB_SIZE = {VOCAB}", f"SEQ_LEN = {SEQ_LEN}", f"GLOBAL_BATCH_SIZE = {BATCH}", "EVAL_BATCH_SIZE = 8",
        "MAX_PREDICTIONS_PER_SEQ = 4", "WARMUP_STEPS = 2", "STEPS_PER_LOOP = 2", "VALIDATION_STEPS = 1",
        "config_definitions.TrainerConfig.checkpoint_interval = 4",
        "masked_lm.PretrainDataConfig.shuffle_buffer_size = 16"]


def int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def write_id_records(directory, num_shards=2, per_shard=40, seed=0):
    """Shards of pretraining records whose example k holds the id token 5 + k at position 1; returns the glob."""
    rng = np.random.RandomState(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    example = 0
    for shard in range(num_shards):
        with tf.io.TFRecordWriter(str(directory / f"train-{shard:05d}-of-{num_shards:05d}.tfrecord")) as writer:
            for _ in range(per_shard):
                length = rng.randint(8, SEQ_LEN + 1)
                ids = [2, 5 + example] + list(rng.randint(5, VOCAB, size=length - 3)) + [3] + [0] * (SEQ_LEN - length)
                feature = {features.INPUT_WORD_IDS: int64_feature(ids),
                           features.INPUT_TYPE_IDS: int64_feature([0] * SEQ_LEN)}
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
                example += 1
    return str(directory / "train-*.tfrecord")


def run_binary(model_dir, records, train_steps, *extra_params, ids_log=None, kill_at_step=None, poison_id=None,
               signal_name=None, crash_in_save=None, flags=("--deterministic", "--mode=train"), timeout=240):
    """Runs tests/reliability/_driver.py (research.main instrumented); returns the CompletedProcess."""
    params = TINY + [f"TRAIN_DATA = '{records}'", f"EVAL_DATA = '{records}'", f"TRAIN_STEPS = {train_steps}",
                     *extra_params]
    command = [sys.executable, str(DRIVER), "--gin_file=gin/experiments/bert_base_pretrain.gin",
               f"--model_dir={model_dir}", *[f"--gin_param={p}" for p in params], *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    for name, value in (("RELIABILITY_IDS_LOG", ids_log), ("RELIABILITY_KILL_AT_STEP", kill_at_step),
                        ("RELIABILITY_POISON_ID", poison_id), ("RELIABILITY_SIGNAL", signal_name),
                        ("RELIABILITY_CRASH_IN_SAVE", crash_in_save)):
        if value is not None:
            env[name] = str(value)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)


def read_ids_log(path):
    """[(global_step, train_batches, [ids...]), ...] from a RELIABILITY_IDS_LOG file."""
    rows = []
    for line in Path(path).read_text().splitlines():
        values = [int(v) for v in line.split()]
        rows.append((values[0], values[1], values[2:]))
    return rows


def checkpoint_tensors(prefix):
    """{name: array} of every tensor in a checkpoint."""
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
