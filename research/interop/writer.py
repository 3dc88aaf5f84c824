"""Builds our models from imported weights and writes what a fine-tune needs: checkpoint, gin file, vocab.

Output directory:
  ckpt.index, ckpt.data-*   tf.train.Checkpoint(encoder=BertEncoder[, masked_lm=MaskedLMHead]): the layout
                            that `INIT_CHECKPOINT` (research.tasks.checkpoint_init) reads
  model.gin                 the encoder's sizes, activation and layer-norm epsilon; VOCAB_SIZE, VOCAB_FILE,
                            LOWER_CASE and INIT_CHECKPOINT (absolute paths), for --gin_file after an experiment
  vocab.txt                 the WordPiece vocabulary (research.data.wordpiece.WordPieceTokenizer)
"""
import os
import shutil

import numpy as np
import tensorflow as tf

from research import modeling
from research.interop.bert_weights import CheckpointImportError

CHECKPOINT_NAME = "ckpt"


def _assign(variable, weights, name, value=None, source_name=None):
    """Assigns weights[name] (or `value` from `source_name`) to `variable`, checking the shape."""
    if value is None:
        value, source_name = weights.get(name)
    expected = tuple(variable.shape)
    if tuple(value.shape) != expected:
        raise CheckpointImportError(f"{weights.source}: tensor {source_name!r} has shape {tuple(value.shape)}, "
                                    f"expected {expected} for {name} (another model size than the config's?)")
    variable.assign(value)


def _checked(weights, name, shape):
    value, source_name = weights.get(name)
    if tuple(value.shape) != tuple(shape):
        raise CheckpointImportError(f"{weights.source}: tensor {source_name!r} has shape {tuple(value.shape)}, "
                                    f"expected {tuple(shape)} for {name}")
    return value, source_name


def build_models(config, weights):
    """Returns (encoder, masked_lm_head or None) holding `weights`.

    Args:
      config: an `EncoderConfig`.
      weights: a `BertWeights`; the pooler and the masked-LM head are optional (a missing pooler keeps
        its random initialization: the caller reports it).

    Raises:
      CheckpointImportError: naming the source tensor that is missing or has the wrong shape.
    """
    encoder = modeling.BertEncoder(**config.encoder_kwargs())
    hidden = config.hidden_size
    embeddings = encoder.embeddings
    _assign(embeddings.word_embeddings.embeddings, weights, "embeddings/word")
    _assign(embeddings.position_embeddings, weights, "embeddings/position")
    _assign(embeddings.type_embeddings.embeddings, weights, "embeddings/type")
    _assign(embeddings.layer_norm.gamma, weights, "embeddings/norm/gamma")
    _assign(embeddings.layer_norm.beta, weights, "embeddings/norm/beta")
    for i, block in enumerate(encoder.transformer_layers):
        prefix = f"layer_{i}/"
        kernels, biases = [], []
        for part in ("query", "key", "value"):
            kernels.append(_checked(weights, prefix + part + "/kernel", (hidden, hidden))[0])
            biases.append(_checked(weights, prefix + part + "/bias", (hidden,))[0])
        # The fused projection: [query | key | value] along the output axis, heads contiguous in each.
        _assign(block.attention.qkv.kernel, weights, prefix + "qkv/kernel", np.concatenate(kernels, axis=1),
                prefix + "query|key|value")
        _assign(block.attention.qkv.bias, weights, prefix + "qkv/bias", np.concatenate(biases), prefix + "query|key|value")
        _assign(block.attention.output_dense.kernel, weights, prefix + "attention_output/kernel")
        _assign(block.attention.output_dense.bias, weights, prefix + "attention_output/bias")
        _assign(block.attention_norm.gamma, weights, prefix + "attention_norm/gamma")
        _assign(block.attention_norm.beta, weights, prefix + "attention_norm/beta")
        _assign(block.intermediate.kernel, weights, prefix + "intermediate/kernel")
        _assign(block.intermediate.bias, weights, prefix + "intermediate/bias")
        _assign(block.ffn_output.kernel, weights, prefix + "output/kernel")
        _assign(block.ffn_output.bias, weights, prefix + "output/bias")
        _assign(block.output_norm.gamma, weights, prefix + "output_norm/gamma")
        _assign(block.output_norm.beta, weights, prefix + "output_norm/beta")
    if weights.has_pooler():
        _assign(encoder.pooler.kernel, weights, "pooler/kernel")
        _assign(encoder.pooler.bias, weights, "pooler/bias")
    head = None
    if weights.has_masked_lm():
        head = modeling.MaskedLMHead(encoder.get_embedding_table(), activation=config.activation,
                                     layer_norm_epsilon=config.layer_norm_epsilon, name="masked_lm")
        _assign(head.dense.kernel, weights, "masked_lm/transform/kernel")
        _assign(head.dense.bias, weights, "masked_lm/transform/bias")
        _assign(head.layer_norm.gamma, weights, "masked_lm/transform_norm/gamma")
        _assign(head.layer_norm.beta, weights, "masked_lm/transform_norm/beta")
        _assign(head.output_bias, weights, "masked_lm/output_bias")
    return encoder, head


def model_gin(config, vocab_file, lower_case, checkpoint_prefix, description):
    """The text of model.gin (see the module docstring)."""
    lines = [f"# {line}" for line in description] + [
        "# Use it after an experiment file, e.g.",
        "#   python -m research.main --gin_file=gin/experiments/finetune_pretrained.gin --gin_file=<this file>",
        "from __gin__ import dynamic_registration",
        "from research import modeling",
        "",
        f"VOCAB_SIZE = {config.vocab_size}",
        f"VOCAB_FILE = {os.path.abspath(vocab_file)!r}",
        "SPM_MODEL = ''",
        f"LOWER_CASE = {lower_case}",
        f"INIT_CHECKPOINT = {os.path.abspath(checkpoint_prefix)!r}",
        "",
        "modeling.BertEncoder:",
        "  vocab_size = %VOCAB_SIZE",
    ]
    for field in ("hidden_size", "num_layers", "num_attention_heads", "intermediate_size", "max_sequence_length",
                  "type_vocab_size", "hidden_dropout_rate", "attention_dropout_rate", "activation",
                  "layer_norm_epsilon"):
        lines.append(f"  {field} = {getattr(config, field)!r}")
    return "\n".join(lines) + "\n"


def write(output_dir, config, weights, vocab_file, lower_case, description=()):
    """Builds the models from `weights` and writes the checkpoint, model.gin and vocab.txt.

    Returns a dict: `checkpoint` (prefix), `gin_file`, `vocab_file`, `has_pooler`, `has_masked_lm`.
    """
    encoder, head = build_models(config, weights)
    os.makedirs(output_dir, exist_ok=True)
    objects = {"encoder": encoder}
    if head is not None:
        objects["masked_lm"] = head
    prefix = tf.train.Checkpoint(**objects).write(os.path.join(output_dir, CHECKPOINT_NAME))
    vocab_out = os.path.join(output_dir, "vocab.txt")
    if os.path.abspath(vocab_file) != os.path.abspath(vocab_out):
        shutil.copyfile(vocab_file, vocab_out)
    notes = list(description)
    notes.append("pooler: imported" if weights.has_pooler() else
                 "pooler: NOT in the source, randomly initialized (fine-tuning trains it)")
    notes.append("masked-LM head: imported" if head is not None else "masked-LM head: not in the source")
    gin_file = os.path.join(output_dir, "model.gin")
    with open(gin_file, "w") as f:
        f.write(model_gin(config, vocab_out, lower_case, prefix, notes))
    return {"checkpoint": prefix, "gin_file": gin_file, "vocab_file": vocab_out, "has_pooler": weights.has_pooler(),
            "has_masked_lm": head is not None, "encoder": encoder, "masked_lm": head}
