"""Best-checkpoint export: keep the checkpoint with the best evaluation metric beside the run.

`BestCheckpointExporter(export_dir, metric_name, metric_comp)` is Model Garden's
(official/core/train_utils.py): after each evaluation the Trainer calls
`maybe_export_checkpoint(checkpoint, eval_logs, global_step)`, which writes the checkpoint to
`export_dir/best_ckpt-<n>` when the metric improved and records the logs with the step in
`export_dir/info.json`, so that a restarted run compares against the best value seen so far. With a
`saved_model_writer` (TrainerConfig.best_checkpoint_export_saved_model), each new best model is also
written as a SavedModel on raw strings to `export_dir/saved_model` (research/export/saved_model.py).
"""
import functools
import json
import os
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

METRIC_COMPARISONS = ("higher", "lower")
_INFO_FILE = "info.json"
_STEP_KEY = "best_ckpt_global_step"
SAVED_MODEL_SUBDIR = "saved_model"


def _to_float(value) -> float:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return float(np.asarray(value).reshape(()))


def _jsonable(value):
    try:
        return _to_float(value)
    except (TypeError, ValueError):
        return str(value)


class BestCheckpointExporter:
    """Exports the checkpoint with the best value of one evaluation metric.

    Args:
      export_dir: where the best checkpoint (`best_ckpt-<n>`, one kept) and `info.json` go.
      metric_name: the key of the metric in the evaluation logs.
      metric_comp: 'higher' or 'lower' is better.
      saved_model_writer: when given, called as `saved_model_writer(model, path)` with the checkpoint's
        `model` and export_dir/saved_model after each new best checkpoint.
    """

    def __init__(self, export_dir: str, metric_name: str, metric_comp: str,
                 saved_model_writer: Callable | None = None):
        if not export_dir:
            raise ValueError("BestCheckpointExporter: export_dir is empty")
        if not metric_name:
            raise ValueError("BestCheckpointExporter: metric_name is empty")
        if metric_comp not in METRIC_COMPARISONS:
            raise ValueError(f"BestCheckpointExporter: metric_comp must be one of {METRIC_COMPARISONS}, "
                             f"got {metric_comp!r}")
        self._export_dir = export_dir
        self._metric_name = metric_name
        self._metric_comp = metric_comp  # export_dir is created by the first export, not before
        self._saved_model_writer = saved_model_writer
        self._best_ckpt_logs = self._maybe_load_best_eval_metric()
        self._checkpoint_manager = None

    @property
    def export_dir(self) -> str:
        return self._export_dir

    @property
    def metric_name(self) -> str:
        return self._metric_name

    @property
    def best_ckpt_logs(self) -> dict | None:
        """The logs of the best evaluation so far (floats), with `best_ckpt_global_step`; None before any."""
        return self._best_ckpt_logs

    @property
    def best_ckpt_logs_path(self) -> str:
        return os.path.join(self._export_dir, _INFO_FILE)

    @property
    def saved_model_path(self) -> str:
        """Where the best model's SavedModel goes (with a saved_model_writer)."""
        return os.path.join(self._export_dir, SAVED_MODEL_SUBDIR)

    @property
    def best_ckpt_path(self) -> str | None:
        """The path of the exported best checkpoint, or None."""
        return tf.train.latest_checkpoint(self._export_dir)

    def _get_checkpoint_manager(self, checkpoint):
        if self._checkpoint_manager is None or self._checkpoint_manager.checkpoint is not checkpoint:
            self._checkpoint_manager = tf.train.CheckpointManager(
                checkpoint, directory=self._export_dir, max_to_keep=1, checkpoint_name="best_ckpt")
        return self._checkpoint_manager

    def _metric_value(self, logs: dict, what: str) -> float:
        if self._metric_name not in logs:
            raise KeyError(f"BestCheckpointExporter: metric {self._metric_name!r} is not in the {what}; "
                           f"available: {sorted(logs)}")
        return _to_float(logs[self._metric_name])

    def _new_metric_is_better(self, new_logs: dict) -> bool:
        new_value = self._metric_value(new_logs, "evaluation logs")
        if self._best_ckpt_logs is None:
            return True
        old_value = self._metric_value(self._best_ckpt_logs, f"saved best logs {self.best_ckpt_logs_path}")
        if self._metric_comp == "higher":
            return new_value > old_value
        return new_value < old_value

    def maybe_export_checkpoint(self, checkpoint: tf.train.Checkpoint, eval_logs: dict, global_step: int,
                                write_logs: bool = True) -> bool:
        """Writes `checkpoint` to export_dir when `eval_logs[metric_name]` beats the best so far.

        Args:
          checkpoint: the tf.train.Checkpoint to export.
          eval_logs: the evaluation logs (name -> scalar).
          global_step: the step the logs belong to.
          write_logs: also record the logs in info.json.

        Returns:
          Whether the checkpoint was exported.

        Raises:
          KeyError: metric_name is not in eval_logs (the message lists the available names).
        """
        global_step = int(_to_float(global_step))
        if not self._new_metric_is_better(eval_logs):
            return False
        logs = {name: _jsonable(value) for name, value in eval_logs.items()}
        logs[_STEP_KEY] = global_step
        self._best_ckpt_logs = logs
        if write_logs:
            self.export_best_eval_metric(logs, global_step)
        path = self._get_checkpoint_manager(checkpoint).save(checkpoint_number=global_step)
        logging.info("Exported the best checkpoint (%s=%s at step %d) to %s", self._metric_name,
                     logs[self._metric_name], global_step, path)
        if self._saved_model_writer is not None:
            model = getattr(checkpoint, "model", None)
            if model is None:
                raise ValueError("BestCheckpointExporter: a saved_model_writer needs the checkpoint's `model` "
                                 "(tf.train.Checkpoint(model=...)), and this checkpoint has none")
            self._saved_model_writer(model, self.saved_model_path)
        return True

    def export_best_eval_metric(self, eval_logs: dict, global_step: int) -> None:
        """Writes the logs, with `best_ckpt_global_step`, to export_dir/info.json."""
        logs = {name: _jsonable(value) for name, value in eval_logs.items()}
        logs[_STEP_KEY] = int(global_step)
        tf.io.gfile.makedirs(self._export_dir)
        tmp_path = self.best_ckpt_logs_path + ".tmp"
        with tf.io.gfile.GFile(tmp_path, "w") as writer:
            writer.write(json.dumps(logs, indent=2, sort_keys=True) + "\n")
        tf.io.gfile.rename(tmp_path, self.best_ckpt_logs_path, overwrite=True)

    def _maybe_load_best_eval_metric(self) -> dict | None:
        if not tf.io.gfile.exists(self.best_ckpt_logs_path):
            return None
        with tf.io.gfile.GFile(self.best_ckpt_logs_path, "r") as reader:
            try:
                return json.loads(reader.read())
            except json.JSONDecodeError as error:
                raise ValueError(f"BestCheckpointExporter: {self.best_ckpt_logs_path} is not valid JSON: "
                                 f"{error}") from None


def maybe_create_best_ckpt_exporter(params, data_dir: str) -> BestCheckpointExporter | None:
    """The exporter configured by `params.trainer.best_checkpoint_*`, or None when they are unset.

    Args:
      params: an ExperimentConfig.
      data_dir: the model directory; the checkpoint goes to data_dir/<best_checkpoint_export_subdir>.

    With `params.trainer.best_checkpoint_export_saved_model` the exporter also writes each best model as
    a SavedModel (research.export.saved_model.export_model with the task's config).
    """
    trainer = params.trainer
    subdir, metric = trainer.best_checkpoint_export_subdir, trainer.best_checkpoint_eval_metric
    if not (data_dir and subdir and metric):
        logging.info("Not exporting the best checkpoint (best_checkpoint_export_subdir=%r, "
                     "best_checkpoint_eval_metric=%r)", subdir, metric)
        return None
    export_dir = os.path.join(data_dir, subdir)
    logging.info("Exporting the best checkpoint by %s (%s is better) to %s", metric,
                 trainer.best_checkpoint_metric_comp, export_dir)
    writer = None
    if getattr(trainer, "best_checkpoint_export_saved_model", False):
        from research.export import saved_model  # the exporter knows models and tokenizers; most runs never need it

        writer = functools.partial(saved_model.export_model, task_config=params.task)
        logging.info("The best model is also exported as a SavedModel to %s", os.path.join(export_dir, SAVED_MODEL_SUBDIR))
    return BestCheckpointExporter(export_dir, metric, trainer.best_checkpoint_metric_comp, saved_model_writer=writer)
