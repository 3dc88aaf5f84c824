"""Predictions on raw text from a trained model: class probabilities, or fill-mask candidates.

    python -m research.predict --model_dir=runs/demo_finetune --text="A gripping, funny film."
    python -m research.predict --model_dir=runs/demo_finetune/saved_model --input=reviews.tsv --output=out.tsv
    python -m research.predict --model_dir=runs/demo_pretrain --text="She was [MASK] to see him."

--model_dir is either a SavedModel (written by `--mode=export`; then neither this package's kernels nor
its gin files are needed) or a training run's directory: its `operative_config.gin` rebuilds the task
and model, the latest checkpoint (or --checkpoint) gives the weights, and the same serving functions as
an export run in this process. Run that form from the directory the training ran in when the
configuration names files by relative paths (the demo's tokenizer cache, say).

Input: --text (repeatable), or --input: a `.tsv` in the fine-tuning format (`label<TAB>text[<TAB>text_b]`;
the accuracy against its labels is reported) or any other file of one text per line. A classifier
writes `predicted_class<TAB>probabilities...<TAB>text` per text (`prediction<TAB>text` for regression);
fill-mask writes `text<TAB>` then, per [MASK], its candidates `token:score` separated by spaces, masks
separated by ` | `. Output goes to --output, or stdout.
"""
import os
import sys
import time

import tensorflow as tf
from absl import app, flags, logging

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "A SavedModel, or a training run's directory.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "With a run directory: '' (latest), 'best', or a checkpoint path.")
_TEXT = flags.DEFINE_multi_string("text", [], "A text to predict on (repeatable); '[MASK]' marks fill-mask positions.")
_INPUT = flags.DEFINE_string("input", None, "A .tsv (label<TAB>text[<TAB>text_b]) or a file of one text per line.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the predictions (default: stdout).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Texts per call.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Fill-mask candidates shown per mask (at most the model's top_k).")

_SAVED_MODEL_FILE = "saved_model.pb"


class SavedModelPredictor:
    """Calls the signatures of an exported SavedModel (research/export/serving.py lists them)."""

    def __init__(self, path: str):
        self._loaded = tf.saved_model.load(path)
        names = set(self._loaded.signatures)
        self.kind = "fill_mask" if "fill_mask" in names else "classifier"
        self._single = self._loaded.signatures["serving_default"]
        self._pair = self._loaded.signatures.get("classify_pair")

    def single(self, texts):
        return _numpy(self._single(text=tf.constant(texts)))

    def pair(self, texts_a, texts_b):
        if self._pair is None:
            raise ValueError("this SavedModel has no classify_pair signature (a fill-mask model?)")
        return _numpy(self._pair(text_a=tf.constant(texts_a), text_b=tf.constant(texts_b)))


class RunDirectoryPredictor:
    """A training run's model, rebuilt from its operative config and checkpoint, behind the same calls."""

    def __init__(self, model_dir: str, checkpoint: str = ""):
        import gin  # a binary may parse gin; the library never does

        from research.core import launch
        from research.export import saved_model

        config_path = os.path.join(model_dir, launch.OPERATIVE_CONFIG_NAME)
        if not tf.io.gfile.exists(config_path):
            raise FileNotFoundError(f"{model_dir} is neither a SavedModel (no {_SAVED_MODEL_FILE}) nor a training "
                                    f"run (no {launch.OPERATIVE_CONFIG_NAME})")
        gin.parse_config_file(config_path)
        bindings = gin.get_bindings(launch.launch)
        config, task_class = bindings["config"], bindings["task_class"]
        task = task_class(config.task, logging_dir=None)
        export_config = bindings.get("export_config") or saved_model.ExportConfig()
        best_subdir = config.trainer.best_checkpoint_export_subdir
        path = saved_model.resolve_checkpoint(model_dir, checkpoint, best_subdir)
        model = saved_model.restore_model(task, path)
        self._module = saved_model.build_serving(model, config.task, tokenizer_model=export_config.tokenizer_model,
                                                 seq_len=export_config.seq_len, top_k=max(export_config.top_k,
                                                                                          _TOP_K.value))
        self.kind = "fill_mask" if hasattr(self._module, "fill_mask") else "classifier"

    def single(self, texts):
        function = self._module.fill_mask if self.kind == "fill_mask" else self._module.classify
        return _numpy(function(tf.constant(texts)))

    def pair(self, texts_a, texts_b):
        if self.kind != "classifier":
            raise ValueError("sentence pairs need a classifier; this run's model is a pretrained masked LM")
        return _numpy(self._module.classify_pair(tf.constant(texts_a), tf.constant(texts_b)))


def _numpy(outputs: dict) -> dict:
    return {name: value.numpy() for name, value in outputs.items()}


def load_predictor(model_dir: str, checkpoint: str = ""):
    """A SavedModelPredictor when model_dir holds a SavedModel, else a RunDirectoryPredictor."""
    if tf.io.gfile.exists(os.path.join(model_dir, _SAVED_MODEL_FILE)):
        if checkpoint:
            raise app.UsageError("--checkpoint only goes with a training run's directory, not a SavedModel")
        return SavedModelPredictor(model_dir)
    return RunDirectoryPredictor(model_dir, checkpoint)


def read_inputs(path: str) -> tuple[list, list | None, list | None]:
    """(texts_a, texts_b or None, labels or None) of a .tsv in the fine-tuning format or a text file."""
    if path.endswith(".tsv"):
        from research.data import classification_input

        examples = classification_input.read_examples(path, label_type="float")
        pairs = examples[0].text_b is not None
        return ([e.text_a for e in examples], [e.text_b for e in examples] if pairs else None,
                [e.label for e in examples])
    with open(path, encoding="utf-8") as text_file:
        texts = [line.rstrip("\r\n") for line in text_file if line.strip()]
    if not texts:
        raise app.UsageError(f"--input {path} holds no text")
    return texts, None, None


def format_classification(outputs: dict, index: int, text: str) -> str:
    if "prediction" in outputs:
        return f"{outputs['prediction'][index]:.6g}\t{text}"
    probabilities = "\t".join(f"{p:.6f}" for p in outputs["probabilities"][index])
    return f"{outputs['predicted_class'][index]}\t{probabilities}\t{text}"


def format_fill_mask(outputs: dict, index: int, text: str, top_k: int) -> str:
    masks = []
    for mask in range(int(outputs["num_masks"][index])):
        tokens = outputs["top_tokens"][index, mask, :top_k]
        scores = outputs["top_scores"][index, mask, :top_k]
        masks.append(" ".join(f"{token.decode('utf-8')}:{score:.4f}" for token, score in zip(tokens, scores)))
    return f"{text}\t" + (" | ".join(masks) if masks else "(no [MASK] within the model's seq_len)")


def predict(predictor, texts_a, texts_b=None, batch_size=64, top_k=5):
    """Yields (output line, outputs of the batch, index in the batch) for each text, in order."""
    for start in range(0, len(texts_a), batch_size):
        batch_a = texts_a[start:start + batch_size]
        if texts_b is not None:
            outputs = predictor.pair(batch_a, texts_b[start:start + batch_size])
        else:
            outputs = predictor.single(batch_a)
        for index, text in enumerate(batch_a):
            shown = text if texts_b is None else f"{text}\t{texts_b[start + index]}"
            if predictor.kind == "fill_mask":
                yield format_fill_mask(outputs, index, shown, top_k), outputs, index
            else:
                yield format_classification(outputs, index, shown), outputs, index


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _MODEL_DIR.value:
        raise app.UsageError("--model_dir is required: a SavedModel or a training run's directory")
    if bool(_TEXT.value) == bool(_INPUT.value):
        raise app.UsageError("give either --text (repeatable) or --input, not both and not neither")
    if _BATCH_SIZE.value < 1 or _TOP_K.value < 1:
        raise app.UsageError(f"--batch_size and --top_k must be >= 1, got {_BATCH_SIZE.value} and {_TOP_K.value}")
    if _INPUT.value and not os.path.isfile(_INPUT.value):
        raise app.UsageError(f"--input {_INPUT.value} does not exist")
    texts_a, texts_b, labels = read_inputs(_INPUT.value) if _INPUT.value else (_TEXT.value, None, None)
    predictor = load_predictor(_MODEL_DIR.value, _CHECKPOINT.value)
    if predictor.kind == "fill_mask" and texts_b is not None:
        raise app.UsageError("fill-mask takes single texts; --input has two text columns")
    output = open(_OUTPUT.value, "w", encoding="utf-8") if _OUTPUT.value else sys.stdout
    start, correct, scored, last_report = time.monotonic(), 0, 0, time.monotonic()
    try:
        for done, (line, outputs, index) in enumerate(
                predict(predictor, texts_a, texts_b, _BATCH_SIZE.value, _TOP_K.value), start=1):
            output.write(line + "\n")
            if labels is not None and "predicted_class" in outputs:
                correct += int(outputs["predicted_class"][index] == labels[done - 1])
                scored += 1
            if time.monotonic() - last_report > 10:
                rate = done / (time.monotonic() - start)
                logging.info("%d of %d texts, %.1f texts/s, eta %.0f s", done, len(texts_a), rate,
                             (len(texts_a) - done) / rate)
                last_report = time.monotonic()
    finally:
        if output is not sys.stdout:
            output.close()
    seconds = time.monotonic() - start
    summary = f"{len(texts_a)} texts in {seconds:.1f} s ({len(texts_a) / max(seconds, 1e-9):.1f} texts/s)"
    if scored:
        summary += f"; accuracy against the file's labels: {correct / scored:.4f}"
    print(summary, file=sys.stderr if output is sys.stdout else sys.stdout)


if __name__ == "__main__":
    app.run(main)
