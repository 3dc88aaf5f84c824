"""Model Garden (tensorflow/models, official.nlp) TF2 BERT checkpoints.

An object-based checkpoint holding a `BertEncoderV2` (variables `<root>/_embedding_layer/...`,
`<root>/_transformer_layers/<i>/...`, `<root>/_pooler_layer/...`) or the older functional `BertEncoder`
(`<root>/layer_with_weights-<n>/...`), usually saved as `tf.train.Checkpoint(encoder=...)`, with or without
a `MaskedLM` (`masked_lm/...`), as Model Garden's pretrainer writes them. When the encoder and the
masked-LM head share the embedding table, the checkpoint keeps it once, under either.

Sizes come from `bert_config.json` when the directory has one, else from the tensors' shapes. The
activation is Model Garden's 'gelu', which is GELU's tanh approximation ('gelu_tanh' here); layer-norm
epsilon 1e-12, as its layers use.
"""
import os
import re

import numpy as np
import tensorflow as tf

from research.interop import bert_weights, tf1_checkpoint
from research.interop.bert_weights import CheckpointImportError

VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
MG_ACTIVATIONS = {"gelu": "gelu_tanh", "relu": "relu", "tanh": "tanh"}
LAYER_NORM_EPSILON = 1e-12
_V2_MARKER = "_embedding_norm_layer/gamma" + VALUE
_V1_BLOCK = re.compile(r"^(.*)layer_with_weights-(\d+)/_attention_layer/_query_dense/kernel" + re.escape(VALUE) + "$")


def _names(prefix):
    return dict(tf.train.list_variables(prefix))


def is_source(directory):
    try:
        names = _names(tf1_checkpoint.checkpoint_prefix(directory))
    except (FileNotFoundError, tf.errors.OpError):
        return False
    return any(name.endswith(_V2_MARKER) or _V1_BLOCK.match(name) for name in names)


class _Layout:
    """Where the encoder's pieces sit in a checkpoint: V2 by attribute names, V1 by layer order."""

    def __init__(self, names, source):
        v2 = [name[:-len(_V2_MARKER)] for name in names if name.endswith(_V2_MARKER)]
        if v2:
            self.root, self.v2 = v2[0], True
            blocks = {int(m.group(1)) for m in (re.match(re.escape(self.root) + r"_transformer_layers/(\d+)/", n)
                                                for n in names) if m}
            self.num_layers = len(blocks)
            return
        blocks = sorted(int(m.group(2)) for m in map(_V1_BLOCK.match, names) if m)
        if not blocks:
            raise CheckpointImportError(f"{source}: no Model Garden BERT encoder variables (looked for "
                                        f"'*/{_V2_MARKER}' and '*/layer_with_weights-N/_attention_layer/...')")
        self.root = _V1_BLOCK.match(next(n for n in names if _V1_BLOCK.match(n))).group(1)
        self.v2, self.num_layers = False, len(blocks)
        if blocks != list(range(4, 4 + len(blocks))):
            raise CheckpointImportError(f"{source}: functional BertEncoder layers at layer_with_weights-{blocks}, "
                                        "expected 4, 5, ... (an embedding projection or other extras are not supported)")

    def embedding(self, kind):
        if self.v2:
            return {"word": "_embedding_layer/embeddings", "position": "_position_embedding_layer/embeddings",
                    "type": "_type_embedding_layer/embeddings", "gamma": "_embedding_norm_layer/gamma",
                    "beta": "_embedding_norm_layer/beta"}[kind]
        return {"word": "layer_with_weights-0/embeddings", "position": "layer_with_weights-1/embeddings",
                "type": "layer_with_weights-2/embeddings", "gamma": "layer_with_weights-3/gamma",
                "beta": "layer_with_weights-3/beta"}[kind]

    def block(self, i):
        return f"_transformer_layers/{i}/" if self.v2 else f"layer_with_weights-{4 + i}/"

    def pooler(self):
        return "_pooler_layer/" if self.v2 else f"layer_with_weights-{4 + self.num_layers}/"


def _inferred_config(names, layout, source):
    """EncoderConfig from the tensors' shapes (a checkpoint without bert_config.json)."""
    def shape(path):
        if path not in names:
            raise CheckpointImportError(f"{source}: missing tensor {path!r}")
        return names[path]

    root = layout.root
    position = shape(root + layout.embedding("position") + VALUE)
    type_shape = shape(root + layout.embedding("type") + VALUE)
    query = shape(root + layout.block(0) + "_attention_layer/_query_dense/kernel" + VALUE)
    intermediate = shape(root + layout.block(0) + "_intermediate_dense/kernel" + VALUE)
    word = _word_embedding_name(names, layout)
    vocab_size = names[word][0] if word else None
    if vocab_size is None:
        raise CheckpointImportError(f"{source}: missing tensor {root + layout.embedding('word') + VALUE!r}")
    return bert_weights.EncoderConfig(
        vocab_size=vocab_size, hidden_size=query[0], num_layers=layout.num_layers, num_attention_heads=query[1],
        intermediate_size=intermediate[1], max_sequence_length=position[0], type_vocab_size=type_shape[0],
        activation="gelu_tanh", layer_norm_epsilon=LAYER_NORM_EPSILON)


def _word_embedding_name(names, layout):
    """The word-embedding tensor: the encoder's own, or the masked-LM head's shared `embedding_table`."""
    own = layout.root + layout.embedding("word") + VALUE
    if own in names:
        return own
    shared = sorted(name for name in names if name.endswith("/embedding_table" + VALUE))
    return shared[0] if shared else None


def read_weights(prefix, config, names, layout):
    reader = tf.train.load_checkpoint(prefix)
    weights = bert_weights.BertWeights(prefix)
    hidden, heads = config.hidden_size, config.num_attention_heads

    def take(name, path, reshape=None):
        if path is None or path not in names:
            weights.add_missing(name, path)
            return
        value = reader.get_tensor(path)
        if reshape is not None:
            if int(np.prod(value.shape)) != int(np.prod(reshape)):
                raise CheckpointImportError(f"{prefix}: tensor {path!r} has shape {tuple(value.shape)}, expected "
                                            f"{tuple(reshape)} or its {heads}-head split for {name}")
            value = value.reshape(reshape)
        weights.add(name, value, path)

    root = layout.root
    word = _word_embedding_name(names, layout)
    take("embeddings/word", word if word else root + layout.embedding("word") + VALUE)
    for kind, name in (("position", "embeddings/position"), ("type", "embeddings/type"),
                       ("gamma", "embeddings/norm/gamma"), ("beta", "embeddings/norm/beta")):
        take(name, root + layout.embedding(kind) + VALUE)
    for i in range(config.num_layers):
        block = root + layout.block(i)
        for part in ("query", "key", "value"):
            take(f"layer_{i}/{part}/kernel", block + f"_attention_layer/_{part}_dense/kernel" + VALUE, (hidden, hidden))
            take(f"layer_{i}/{part}/bias", block + f"_attention_layer/_{part}_dense/bias" + VALUE, (hidden,))
        take(f"layer_{i}/attention_output/kernel", block + "_attention_layer/_output_dense/kernel" + VALUE,
             (hidden, hidden))
        take(f"layer_{i}/attention_output/bias", block + "_attention_layer/_output_dense/bias" + VALUE)
        for ours, theirs in (("attention_norm", "_attention_layer_norm"), ("output_norm", "_output_layer_norm")):
            take(f"layer_{i}/{ours}/gamma", block + theirs + "/gamma" + VALUE)
            take(f"layer_{i}/{ours}/beta", block + theirs + "/beta" + VALUE)
        for ours, theirs in (("intermediate", "_intermediate_dense"), ("output", "_output_dense")):
            take(f"layer_{i}/{ours}/kernel", block + theirs + "/kernel" + VALUE)
            take(f"layer_{i}/{ours}/bias", block + theirs + "/bias" + VALUE)
    take("pooler/kernel", root + layout.pooler() + "kernel" + VALUE)
    take("pooler/bias", root + layout.pooler() + "bias" + VALUE)
    head_bias = sorted(name for name in names if name.endswith("output_bias.Sbias" + VALUE))
    if head_bias:
        head = head_bias[0][:-len("output_bias.Sbias" + VALUE)]
        take("masked_lm/transform/kernel", head + "dense/kernel" + VALUE)
        take("masked_lm/transform/bias", head + "dense/bias" + VALUE)
        take("masked_lm/transform_norm/gamma", head + "layer_norm/gamma" + VALUE)
        take("masked_lm/transform_norm/beta", head + "layer_norm/beta" + VALUE)
        take("masked_lm/output_bias", head_bias[0])
    return weights


def read(directory):
    """(EncoderConfig, BertWeights, vocab_file, None) of a Model Garden checkpoint directory."""
    prefix = tf1_checkpoint.checkpoint_prefix(directory)
    names = _names(prefix)
    layout = _Layout(names, prefix)
    if os.path.isfile(os.path.join(directory, "bert_config.json")):
        config = tf1_checkpoint.read_bert_config(directory, MG_ACTIVATIONS)
        if config.num_layers != layout.num_layers:
            raise CheckpointImportError(f"{prefix}: holds {layout.num_layers} transformer layers, bert_config.json "
                                        f"says num_hidden_layers={config.num_layers}")
    else:
        config = _inferred_config(names, layout, prefix)
    vocab_file = bert_weights.find_file(directory, "vocab.txt")
    if vocab_file is None:
        raise FileNotFoundError(f"{directory}: no vocab.txt (the WordPiece vocabulary of the model)")
    return config, read_weights(prefix, config, names, layout), vocab_file, None
