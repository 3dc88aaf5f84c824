"""Tiny models, records and configs shared by the task tests."""
import numpy as np
import tensorflow as tf

from research import modeling
from research.core import optimization
from research.data import features

VOCAB = 60
SEQ_LEN = 16
PREDICTIONS = 4
# Gin bindings that shrink any gin/models encoder to a test size.
TINY_ENCODER_BINDINGS = ["modeling.BertEncoder.hidden_size = 16", "modeling.BertEncoder.num_layers = 1",
                         "modeling.BertEncoder.num_attention_heads = 2", "modeling.BertEncoder.intermediate_size = 32"]


def tiny_encoder(hidden_size=16, vocab_size=VOCAB):
    return modeling.BertEncoder(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_sequence_length=SEQ_LEN, hidden_dropout_rate=0.0,
                                attention_dropout_rate=0.0)


def write_pretraining_records(directory, num_examples=48, next_sentence=False, seed=0):
    """Writes one shard of random unmasked examples; returns its glob."""
    rng = np.random.RandomState(seed)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "train-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index in range(num_examples):
            length = rng.randint(6, SEQ_LEN + 1)
            ids = [2] + list(rng.randint(5, VOCAB, size=length - 2)) + [3] + [0] * (SEQ_LEN - length)
            feature = {features.INPUT_WORD_IDS: _int64(ids), features.INPUT_TYPE_IDS: _int64([0] * SEQ_LEN)}
            if next_sentence:
                feature[features.NEXT_SENTENCE_LABELS] = _int64([index % 2])
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(directory / "train-*.tfrecord")


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def constant_optimizer_config(learning_rate=3e-3):
    return optimization.OptimizerConfig(type="adamw", learning_rate=learning_rate, warmup_steps=0,
                                        decay="constant", weight_decay_rate=0.0, global_clipnorm=None)


def train_steps(task, model, optimizer, batch, steps):
    """Runs `steps` train steps on one fixed batch; returns the losses."""
    step = tf.function(lambda inputs: task.train_step(inputs, model, optimizer))
    return [float(step(batch)[task.loss]) for _ in range(steps)]
