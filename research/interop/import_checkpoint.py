"""Imports a published BERT checkpoint: our checkpoint, model.gin and vocab.txt in one directory.

    python -m research.interop.import_checkpoint --source=DIR --output_dir=DIR [--format=auto] [--lower_case=auto]

DIR is a Hugging Face model directory (config.json, model.safetensors, vocab.txt), a google-research/bert
release (bert_config.json, bert_model.ckpt.*, vocab.txt) or a Model Garden TF2 checkpoint directory
(checkpoint, vocab.txt, optionally bert_config.json); `--format=auto` tells them apart. Then fine-tune with

    python -m research.main --gin_file=gin/experiments/finetune_pretrained.gin --gin_file=DIR/model.gin
"""
import os
import time

from absl import app, flags, logging

from research.interop import bert_weights, hf_safetensors, model_garden, tf1_checkpoint, writer

FORMATS = {"hf": hf_safetensors, "tf1": tf1_checkpoint, "model_garden": model_garden}
FORMAT_NAMES = {"hf": "Hugging Face safetensors", "tf1": "google-research/bert TF1 checkpoint",
                "model_garden": "Model Garden TF2 checkpoint"}
LOWER_CASE_CHOICES = ("auto", "true", "false")


def detect_format(source):
    """'hf', 'tf1' or 'model_garden' for the directory `source`; ValueError saying what it lacks otherwise."""
    if not os.path.isdir(source):
        raise FileNotFoundError(f"--source {source!r} is not a directory")
    for name in ("hf", "tf1", "model_garden"):
        if FORMATS[name].is_source(source):
            return name
    raise ValueError(f"--source {source!r} is none of the formats: Hugging Face (config.json + model.safetensors), "
                     "google-research/bert (bert_config.json + bert_model.ckpt.* with bert/... variables) or Model "
                     f"Garden (a TF2 checkpoint of a BertEncoder); it holds {sorted(os.listdir(source))[:20]}")


def import_checkpoint(source, output_dir, source_format="auto", lower_case=None):
    """Imports `source` into `output_dir` (see the module docstring).

    Args:
      source: the directory of the published checkpoint.
      output_dir: where to write ckpt.*, model.gin and vocab.txt (created if needed).
      source_format: 'auto', 'hf', 'tf1' or 'model_garden'.
      lower_case: True/False for the tokenizer, or None: the source's tokenizer_config.json when it says,
        else True exactly when the vocabulary holds no upper-case token.

    Returns:
      The dict of `writer.write` plus `format`, `config` (EncoderConfig) and `lower_case`.

    Raises:
      CheckpointImportError (a ValueError): naming the file and the tensor or field at fault.
    """
    if source_format == "auto":
        source_format = detect_format(source)
    if source_format not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {sorted(FORMATS)}, got {source_format!r}")
    config, weights, vocab_file, source_lower_case = FORMATS[source_format].read(source)
    how = "as given"
    if lower_case is None:
        if source_lower_case is not None:
            lower_case, how = source_lower_case, "from tokenizer_config.json"
        else:
            lower_case, how = bert_weights.vocab_is_lower_case(vocab_file), "from the vocabulary's letter case"
    description = [f"Imported from {os.path.abspath(source)} ({FORMAT_NAMES[source_format]}) by "
                   "research.interop.import_checkpoint.", f"lower_case: {lower_case} ({how})."]
    result = writer.write(output_dir, config, weights, vocab_file, lower_case, description)
    return {**result, "format": source_format, "config": config, "lower_case": lower_case}


_SOURCE = flags.DEFINE_string("source", None, "Directory of the published checkpoint.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory to write ckpt.*, model.gin and vocab.txt to.")
_FORMAT = flags.DEFINE_enum("format", "auto", ["auto", *FORMATS], "Source format; auto detects it.")
_LOWER_CASE = flags.DEFINE_enum("lower_case", "auto", LOWER_CASE_CHOICES,
                                "Whether the tokenizer lower-cases; auto: the source's tokenizer_config.json, "
                                "else whether the vocabulary is all lower case.")


def main(argv):
    del argv
    if not _SOURCE.value or not _OUTPUT_DIR.value:
        raise app.UsageError("--source and --output_dir are required")
    start = time.time()
    lower_case = {"auto": None, "true": True, "false": False}[_LOWER_CASE.value]
    result = import_checkpoint(_SOURCE.value, _OUTPUT_DIR.value, _FORMAT.value, lower_case)
    config = result["config"]
    logging.info("Imported %s (%s) in %.1f s", _SOURCE.value, FORMAT_NAMES[result["format"]], time.time() - start)
    print(f"Imported {FORMAT_NAMES[result['format']]}: {config.num_layers} layers, hidden {config.hidden_size}, "
          f"{config.num_attention_heads} heads, intermediate {config.intermediate_size}, vocabulary "
          f"{config.vocab_size}, activation {config.activation}, layer-norm epsilon {config.layer_norm_epsilon:g}, "
          f"lower_case {result['lower_case']}; pooler {'imported' if result['has_pooler'] else 'NOT in the source'}"
          f", masked-LM head {'imported' if result['has_masked_lm'] else 'not in the source'}.")
    print(f"  checkpoint: {result['checkpoint']}\n  gin file:   {result['gin_file']}\n"
          f"  vocabulary: {result['vocab_file']}")


if __name__ == "__main__":
    app.run(main)
