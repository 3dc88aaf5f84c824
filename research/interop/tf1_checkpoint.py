"""google-research/bert's TF1 releases: `bert_config.json` + `bert_model.ckpt.*` + `vocab.txt`.

Variables `bert/embeddings/...`, `bert/encoder/layer_<i>/...`, `bert/pooler/dense/...` and the masked-LM
head `cls/predictions/...`, read with `tf.train.load_checkpoint`; kernels are already [in, out]. The
original code's 'gelu' is GELU's tanh approximation, so a config's "gelu" imports as 'gelu_tanh'
(Hugging Face's conversions of the same weights compute the exact GELU, a difference of at most ~1e-3
per activation). Layer normalization uses epsilon 1e-12, as that code does.
"""
import glob
import json
import os

import tensorflow as tf

from research.interop import bert_weights
from research.interop.bert_weights import CheckpointImportError

# google-research/bert's activation names -> ours.
TF1_ACTIVATIONS = {"gelu": "gelu_tanh", "relu": "relu", "tanh": "tanh"}
LAYER_NORM_EPSILON = 1e-12


def checkpoint_prefix(directory):
    """The checkpoint prefix in `directory`: bert_model.ckpt, else the state file's latest, else the only one."""
    if os.path.isfile(os.path.join(directory, "bert_model.ckpt.index")):
        return os.path.join(directory, "bert_model.ckpt")
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        return latest
    indexes = sorted(glob.glob(os.path.join(directory, "*.index")))
    if len(indexes) != 1:
        raise FileNotFoundError(f"{directory}: expected one TensorFlow checkpoint (*.index), found "
                                f"{[os.path.basename(i) for i in indexes] or 'none'}")
    return indexes[0][:-len(".index")]


def read_bert_config(directory, activations):
    """The EncoderConfig of `directory/bert_config.json`, with `activations` mapping its hidden_act."""
    path = os.path.join(directory, "bert_config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory}: no bert_config.json")
    with open(path) as f:
        config = json.load(f)

    def field(name):
        if name not in config:
            raise CheckpointImportError(f"{path}: missing field {name!r}")
        return config[name]

    activation = field("hidden_act")
    if activation not in activations:
        raise CheckpointImportError(f"{path}: hidden_act {activation!r} is not supported (supported: "
                                    f"{sorted(activations)})")
    return bert_weights.EncoderConfig(
        vocab_size=field("vocab_size"), hidden_size=field("hidden_size"), num_layers=field("num_hidden_layers"),
        num_attention_heads=field("num_attention_heads"), intermediate_size=field("intermediate_size"),
        max_sequence_length=field("max_position_embeddings"), type_vocab_size=field("type_vocab_size"),
        activation=activations[activation], layer_norm_epsilon=LAYER_NORM_EPSILON,
        hidden_dropout_rate=float(config.get("hidden_dropout_prob", 0.1)),
        attention_dropout_rate=float(config.get("attention_probs_dropout_prob", 0.1)))


def is_source(directory):
    if not os.path.isfile(os.path.join(directory, "bert_config.json")):
        return False
    try:
        names = dict(tf.train.list_variables(checkpoint_prefix(directory)))
    except (FileNotFoundError, tf.errors.OpError):
        return False
    return "bert/embeddings/word_embeddings" in names


def read_weights(prefix, config):
    """The BertWeights of the TF1 checkpoint at `prefix`."""
    reader = tf.train.load_checkpoint(prefix)
    available = reader.get_variable_to_shape_map()
    weights = bert_weights.BertWeights(prefix)

    def take(name, source_name):
        if source_name in available:
            weights.add(name, reader.get_tensor(source_name), source_name)
        else:
            weights.add_missing(name, source_name)

    def dense(name, stem):
        take(name + "/kernel", stem + "/kernel")
        take(name + "/bias", stem + "/bias")

    def norm(name, stem):
        take(name + "/gamma", stem + "/gamma")
        take(name + "/beta", stem + "/beta")

    take("embeddings/word", "bert/embeddings/word_embeddings")
    take("embeddings/position", "bert/embeddings/position_embeddings")
    take("embeddings/type", "bert/embeddings/token_type_embeddings")
    norm("embeddings/norm", "bert/embeddings/LayerNorm")
    for i in range(config.num_layers):
        stem = f"bert/encoder/layer_{i}/"
        for part in ("query", "key", "value"):
            dense(f"layer_{i}/{part}", stem + f"attention/self/{part}")
        dense(f"layer_{i}/attention_output", stem + "attention/output/dense")
        norm(f"layer_{i}/attention_norm", stem + "attention/output/LayerNorm")
        dense(f"layer_{i}/intermediate", stem + "intermediate/dense")
        dense(f"layer_{i}/output", stem + "output/dense")
        norm(f"layer_{i}/output_norm", stem + "output/LayerNorm")
    extra_layer = f"bert/encoder/layer_{config.num_layers}/attention/self/query/kernel"
    if extra_layer in available:
        raise CheckpointImportError(f"{prefix}: holds {extra_layer!r} but bert_config.json says "
                                    f"num_hidden_layers={config.num_layers}")
    dense("pooler", "bert/pooler/dense")
    dense("masked_lm/transform", "cls/predictions/transform/dense")
    norm("masked_lm/transform_norm", "cls/predictions/transform/LayerNorm")
    take("masked_lm/output_bias", "cls/predictions/output_bias")
    return weights


def read(directory):
    """(EncoderConfig, BertWeights, vocab_file, None) of a google-research/bert release directory (its
    lower-casing is not recorded: the caller infers it from the vocabulary or takes it from a flag)."""
    config = read_bert_config(directory, TF1_ACTIVATIONS)
    vocab_file = bert_weights.find_file(directory, "vocab.txt")
    if vocab_file is None:
        raise FileNotFoundError(f"{directory}: no vocab.txt (the WordPiece vocabulary of the model)")
    return config, read_weights(checkpoint_prefix(directory), config), vocab_file, None
