"""SavedModels on raw strings: a trained classifier, or a pretrained masked LM for fill-mask.

    python -m research.main --gin_file=gin/experiments/demo_finetune.gin --mode=export
        [--gin_param="saved_model.ExportConfig.checkpoint = 'best'"]

writes `<model_dir>/saved_model` (research/export/serving.py lists the signatures). The serving
functions are traced inside `research.ops.backend.reference_only()`, so the graph holds only
TensorFlow's own ops (checked before saving): the SavedModel loads with `tf.saved_model.load` and plain
TensorFlow, without this package or its kernels. The tokenizer is in the graph (its tables saved with
it); a copy of its vocabulary file and `export_info.json` (kind, sizes, checkpoint) go to
`<export_dir>/assets.extra/`.
"""
import dataclasses
import json
import os

import keras
import tensorflow as tf
from absl import logging

from research import modeling
from research.core.config_definitions import require
from research.export import serving, tokenizers
from research.export.wordpiece_graph import WordPieceGraphTokenizer
from research.ops import backend as ops_backend

INFO_FILE = "export_info.json"
EXTRA_DIR = "assets.extra"
DEFAULT_SUBDIR = "saved_model"
DEFAULT_BEST_SUBDIR = "best_ckpt"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What `--mode=export` writes.

    Attributes:
      export_dir: where the SavedModel goes; '' means <model_dir>/saved_model. An existing one is replaced.
      checkpoint: '' for the latest checkpoint of model_dir, 'best' for the best-checkpoint exporter's
        (model_dir/<best_checkpoint_export_subdir>), or a checkpoint path or directory.
      top_k: fill-mask candidates per mask.
      tokenizer_model: the vocabulary file: a sentencepiece .model, or a WordPiece vocab.txt (lower-cased as
        the task data's lower_case says); '' takes the task data's spm_model or vocab_file.
      seq_len: the most tokens per text; 0 takes the task data's seq_len.
    """
    export_dir: str = ""
    checkpoint: str = ""
    top_k: int = 5
    tokenizer_model: str = ""
    seq_len: int = 0

    def __post_init__(self):
        require(isinstance(self.top_k, int) and self.top_k >= 1, f"ExportConfig.top_k must be an int >= 1, "
                                                                  f"got {self.top_k!r}")
        require(isinstance(self.seq_len, int) and self.seq_len >= 0, f"ExportConfig.seq_len must be an int >= 0 "
                                                                      f"(0: the task data's), got {self.seq_len!r}")


def _data_config(task_config):
    data = getattr(task_config, "train_data", None) or getattr(task_config, "validation_data", None)
    if data is None:
        raise ValueError("the task config has neither train_data nor validation_data to read the tokenizer and "
                         "seq_len from; set ExportConfig.tokenizer_model and ExportConfig.seq_len")
    return data


def build_serving(model: keras.Model, task_config, *, tokenizer_model: str = "", seq_len: int = 0,
                  top_k: int = 5) -> serving.ClassifierServing | serving.FillMaskServing:
    """The serving module of a trained model: ClassifierServing for a BertClassifier, FillMaskServing
    for a BertPretrainer.

    Args:
      model: the built model, weights loaded.
      task_config: its task's config (num_classes; the data config's spm_model or vocab_file and
        lower_case, and seq_len).
      tokenizer_model, seq_len: overrides of the data config's (see ExportConfig).
      top_k: fill-mask candidates per mask.

    Raises:
      TypeError: a model of another kind.
      ValueError: no tokenizer or seq_len known (names the binding to set).
    """
    data = None if tokenizer_model and seq_len else _data_config(task_config)
    if not tokenizer_model:
        tokenizer_model = getattr(data, "spm_model", "") or getattr(data, "vocab_file", "")
        if not tokenizer_model:
            raise ValueError("the task's data config has an empty spm_model and vocab_file, so the export does "
                             "not know the tokenizer: bind SPM_MODEL (a sentencepiece model) or VOCAB_FILE (a "
                             "WordPiece vocab.txt, with LOWER_CASE), or saved_model.ExportConfig.tokenizer_model, "
                             "to the encoder's vocabulary")
    if not tf.io.gfile.exists(tokenizer_model):
        raise FileNotFoundError(f"tokenizer model {tokenizer_model!r} does not exist")
    seq_len = seq_len or getattr(data, "seq_len", 0)
    tokenizer = tokenizers.graph_tokenizer_for(tokenizer_model, lower_case=getattr(data, "lower_case", True))
    if isinstance(tokenizer, WordPieceGraphTokenizer) and not hasattr(data, "lower_case"):
        raise ValueError(f"the export of the WordPiece vocabulary {tokenizer_model!r} needs to know whether it "
                         "lower-cases: the task's data config (with lower_case) must be bound")
    if isinstance(model, modeling.BertClassifier):
        return serving.ClassifierServing(model, task_config.num_classes, tokenizer, seq_len)
    if isinstance(model, modeling.BertPretrainer):
        return serving.FillMaskServing(model.encoder, model.masked_lm, tokenizer, seq_len, top_k=top_k)
    raise TypeError(f"cannot export a {type(model).__name__}: only BertClassifier (classification) and "
                    "BertPretrainer (fill-mask) have serving signatures")


def signatures(module) -> dict:
    """The serving signatures of a serving module, by name; 'serving_default' first."""
    if isinstance(module, serving.ClassifierServing):
        return {"serving_default": module.classify, "classify_pair": module.classify_pair,
                "tokenize": module.tokenize}
    return {"serving_default": module.fill_mask, "fill_mask": module.fill_mask, "tokenize": module.tokenize}


def native_ops(concrete_function) -> set[str]:
    """The `Research>` ops in a concrete function's graph and the functions it calls."""
    graph_def = concrete_function.graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return {node.op for node in nodes if node.op.startswith("Research>")}


def save(module, export_dir: str, info: dict | None = None) -> str:
    """Traces the module's signatures with the reference twins and saves it to export_dir (replaced if present).

    Args:
      module: a ClassifierServing or FillMaskServing.
      export_dir: the SavedModel directory.
      info: extra facts for assets.extra/export_info.json (the checkpoint, say).

    Returns:
      export_dir.

    Raises:
      RuntimeError: a native op reached the graph (a layer bound to backend='native' raises earlier).
    """
    with ops_backend.reference_only():
        functions = {name: function.get_concrete_function() for name, function in signatures(module).items()}
        found = set().union(*(native_ops(function) for function in functions.values()))
        if found:
            raise RuntimeError(f"the serving graph holds native ops {sorted(found)}: it would not load without "
                               "this package's kernels")
        staging = export_dir.rstrip("/") + ".partial"
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        tf.saved_model.save(module, staging, signatures=functions)
    tokenizer = module.tokenizer
    extra = os.path.join(staging, EXTRA_DIR)
    tf.io.gfile.makedirs(extra)
    vocabulary_file = getattr(tokenizer, "model_path", None)
    if vocabulary_file:
        tf.io.gfile.copy(vocabulary_file, os.path.join(extra, os.path.basename(vocabulary_file)), overwrite=True)
    facts = {"kind": "classifier" if isinstance(module, serving.ClassifierServing) else "fill_mask",
             "signatures": sorted(functions), "seq_len": module.seq_len, "vocab_size": tokenizer.vocab_size,
             "tokenizer": type(tokenizer).__name__, "vocabulary_file": vocabulary_file, **tokenizer.export_facts(),
             **({"num_classes": module.num_classes} if isinstance(module, serving.ClassifierServing)
                else {"top_k": module.top_k}), **(info or {})}
    with tf.io.gfile.GFile(os.path.join(extra, INFO_FILE), "w") as info_file:
        info_file.write(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    if tf.io.gfile.exists(export_dir):
        logging.warning("Replacing the SavedModel in %s", export_dir)
        if tf.io.gfile.isdir(export_dir):
            tf.io.gfile.rmtree(export_dir)
        else:
            tf.io.gfile.remove(export_dir)
    tf.io.gfile.rename(staging, export_dir)
    logging.info("Exported a %s SavedModel (signatures %s) to %s", facts["kind"], facts["signatures"], export_dir)
    return export_dir


def export_model(model: keras.Model, export_dir: str, task_config, *, tokenizer_model: str = "", seq_len: int = 0,
                 top_k: int = 5, info: dict | None = None) -> str:
    """`build_serving` then `save`: a trained model in memory to a SavedModel; returns export_dir."""
    module = build_serving(model, task_config, tokenizer_model=tokenizer_model, seq_len=seq_len, top_k=top_k)
    return save(module, export_dir, info)


def resolve_checkpoint(model_dir: str, checkpoint: str = "", best_subdir: str = DEFAULT_BEST_SUBDIR) -> str:
    """A checkpoint prefix from ExportConfig.checkpoint's forms ('' latest, 'best', a path or directory).

    Raises:
      FileNotFoundError: naming where no checkpoint was found.
    """
    if checkpoint == "best":
        where = os.path.join(model_dir, best_subdir or DEFAULT_BEST_SUBDIR)
    else:
        where = checkpoint or model_dir
    if tf.io.gfile.isdir(where):
        path = tf.train.latest_checkpoint(where)
    else:
        path = where if tf.io.gfile.exists(where + ".index") else None
    if not path:
        hint = " (was the run evaluated with a best_checkpoint_export_subdir?)" if checkpoint == "best" else ""
        raise FileNotFoundError(f"no checkpoint at {where!r}{hint}: train first, or point "
                                f"saved_model.ExportConfig.checkpoint at one")
    return path


def restore_model(task, checkpoint_path: str) -> keras.Model:
    """Builds the task's model and loads its weights from a training checkpoint (`model` of the Trainer's).

    Raises:
      ValueError: the checkpoint does not hold this model (another architecture or task).
    """
    model = task.build_model()
    try:
        status = tf.train.Checkpoint(model=model).read(checkpoint_path)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
        raise ValueError(f"checkpoint {checkpoint_path} does not hold this task's model (another architecture "
                         f"or task?): {str(error).splitlines()[0]}") from None
    logging.info("Restored %s from %s", type(model).__name__, checkpoint_path)
    return model


def export_from_model_dir(task, config, model_dir: str, export_config: ExportConfig | None = None) -> str:
    """What `--mode=export` does: restores the chosen checkpoint of model_dir and saves its SavedModel.

    Args:
      task: the experiment's task (built from config.task).
      config: the ExperimentConfig (its trainer names the best-checkpoint subdirectory).
      model_dir: the run's directory.
      export_config: what to write; None means ExportConfig().

    Returns:
      The SavedModel directory.
    """
    export_config = export_config or ExportConfig()
    best_subdir = getattr(getattr(config, "trainer", None), "best_checkpoint_export_subdir", "")
    checkpoint = resolve_checkpoint(model_dir, export_config.checkpoint, best_subdir)
    model = restore_model(task, checkpoint)
    export_dir = export_config.export_dir or os.path.join(model_dir, DEFAULT_SUBDIR)
    return export_model(model, export_dir, config.task, tokenizer_model=export_config.tokenizer_model,
                        seq_len=export_config.seq_len, top_k=export_config.top_k, info={"checkpoint": checkpoint})
