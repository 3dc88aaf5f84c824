"""Hugging Face BERT checkpoints: `config.json` + `model.safetensors` (or sharded, with its index) + `vocab.txt`.

Reads BertModel (no prefix) and the BertFor* heads' checkpoints (`bert.` prefix, masked-LM head under
`cls.predictions.`), and their same-architecture relatives (MiniLM, uncased or cased), with the
`safetensors` package: no PyTorch. Linear weights ([out, in]) are transposed to our kernels ([in, out]).
Lower-casing comes from `tokenizer_config.json` (`do_lower_case`) when there is one.
"""
import json
import os

from research.interop import bert_weights
from research.interop.bert_weights import CheckpointImportError

SUPPORTED_MODEL_TYPES = ("bert",)


def is_source(directory):
    return os.path.isfile(os.path.join(directory, "config.json")) and bool(_safetensors_files(directory, check=False))


def _safetensors_files(directory, check=True):
    single = os.path.join(directory, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(directory, shard) for shard in shards]
    if check:
        raise FileNotFoundError(f"{directory}: no model.safetensors nor model.safetensors.index.json")
    return []


def _load_tensors(directory):
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ImportError("reading Hugging Face checkpoints needs the 'safetensors' package: "
                          "pip install 'research[interop]' (or pip install safetensors)") from None
    tensors = {}
    for path in _safetensors_files(directory):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{directory}: shard {os.path.basename(path)} named by the index is missing")
        tensors.update(load_file(path))
    return tensors


def read_config(directory):
    """The EncoderConfig of `directory/config.json`; CheckpointImportError naming a missing or unsupported field."""
    path = os.path.join(directory, "config.json")
    with open(path) as f:
        config = json.load(f)
    model_type = config.get("model_type", "bert")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointImportError(f"{path}: model_type {model_type!r} is not a BERT architecture "
                                    f"(supported: {SUPPORTED_MODEL_TYPES})")
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointImportError(f"{path}: position_embedding_type {position_type!r} is not supported "
                                    "(only 'absolute')")

    def field(name):
        if name not in config:
            raise CheckpointImportError(f"{path}: missing field {name!r}")
        return config[name]

    return bert_weights.EncoderConfig(
        vocab_size=field("vocab_size"), hidden_size=field("hidden_size"), num_layers=field("num_hidden_layers"),
        num_attention_heads=field("num_attention_heads"), intermediate_size=field("intermediate_size"),
        max_sequence_length=field("max_position_embeddings"), type_vocab_size=field("type_vocab_size"),
        activation=bert_weights.activation_from_hf(field("hidden_act"), path),
        layer_norm_epsilon=float(config.get("layer_norm_eps", 1e-12)),
        hidden_dropout_rate=float(config.get("hidden_dropout_prob", 0.1)),
        attention_dropout_rate=float(config.get("attention_probs_dropout_prob", 0.1)))


def read_lower_case(directory):
    """`do_lower_case` of tokenizer_config.json, or None when the directory does not say."""
    path = os.path.join(directory, "tokenizer_config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        value = json.load(f).get("do_lower_case")
    return value if isinstance(value, bool) else None


def _norm_names(stem):
    """(gamma, beta) source names of a LayerNorm: `.weight`/`.bias`, or the older `.gamma`/`.beta`."""
    return [(f"{stem}.weight", f"{stem}.gamma"), (f"{stem}.bias", f"{stem}.beta")]


def read_weights(directory, config):
    """The BertWeights of the checkpoint in `directory`, sized by `config`."""
    tensors = _load_tensors(directory)
    source = os.path.join(directory, "model.safetensors")
    prefix = ""
    if "bert.embeddings.word_embeddings.weight" in tensors:
        prefix = "bert."
    weights = bert_weights.BertWeights(source)

    def take(name, candidates, transpose=False):
        for candidate in candidates:
            if candidate in tensors:
                value = tensors[candidate]
                weights.add(name, value.T if transpose else value, candidate)
                return
        weights.add_missing(name, candidates[0])

    def linear(name, stem):
        take(name + "/kernel", [stem + ".weight"], transpose=True)
        take(name + "/bias", [stem + ".bias"])

    def norm(name, stem):
        (gamma, old_gamma), (beta, old_beta) = _norm_names(stem)
        take(name + "/gamma", [gamma, old_gamma])
        take(name + "/beta", [beta, old_beta])

    p = prefix
    take("embeddings/word", [p + "embeddings.word_embeddings.weight"])
    take("embeddings/position", [p + "embeddings.position_embeddings.weight"])
    take("embeddings/type", [p + "embeddings.token_type_embeddings.weight"])
    norm("embeddings/norm", p + "embeddings.LayerNorm")
    for i in range(config.num_layers):
        stem = f"{p}encoder.layer.{i}."
        for part in ("query", "key", "value"):
            linear(f"layer_{i}/{part}", stem + f"attention.self.{part}")
        linear(f"layer_{i}/attention_output", stem + "attention.output.dense")
        norm(f"layer_{i}/attention_norm", stem + "attention.output.LayerNorm")
        linear(f"layer_{i}/intermediate", stem + "intermediate.dense")
        linear(f"layer_{i}/output", stem + "output.dense")
        norm(f"layer_{i}/output_norm", stem + "output.LayerNorm")
    extra_layer = f"{p}encoder.layer.{config.num_layers}.attention.self.query.weight"
    if extra_layer in tensors:
        raise CheckpointImportError(f"{source}: holds {extra_layer!r} but config.json says num_hidden_layers="
                                    f"{config.num_layers}")
    linear("pooler", p + "pooler.dense")
    linear("masked_lm/transform", "cls.predictions.transform.dense")
    norm("masked_lm/transform_norm", "cls.predictions.transform.LayerNorm")
    take("masked_lm/output_bias", ["cls.predictions.bias", "cls.predictions.decoder.bias"])
    decoder = tensors.get("cls.predictions.decoder.weight")
    if decoder is not None and weights.has("embeddings/word"):
        word = weights.get("embeddings/word")[0]
        if decoder.shape != word.shape or abs(decoder.astype("float32") - word).max() > 0:
            raise CheckpointImportError(f"{source}: 'cls.predictions.decoder.weight' differs from the word "
                                        "embeddings; only heads tied to the embedding table are supported")
    return weights


def read(directory):
    """(EncoderConfig, BertWeights, vocab_file, lower_case or None) of a Hugging Face checkpoint directory."""
    config = read_config(directory)
    vocab_file = bert_weights.find_file(directory, "vocab.txt")
    if vocab_file is None:
        raise FileNotFoundError(f"{directory}: no vocab.txt (the WordPiece vocabulary of the model)")
    return config, read_weights(directory, config), vocab_file, read_lower_case(directory)
