"""What `research.main` runs once gin has bound everything: strategy, precision, task, run loop.

Gin binds `launch`'s keyword arguments in the experiment files (gin/experiments/*.gin); this module
itself stays free of gin, like every library module.
"""
import dataclasses
import os
from typing import Any, Callable

import keras
import tensorflow as tf
from absl import logging

from research.core import config_definitions, distribute, optimization, train_lib
from research.export import saved_model

MODES = ("train", "eval", "train_and_eval", "continuous_eval", "export")
OPERATIVE_CONFIG_NAME = "operative_config.gin"


@dataclasses.dataclass
class LaunchResult:
    """What a run leaves: the model, the last evaluation logs, and where everything was written."""
    model: Any
    eval_logs: dict | None
    model_dir: str
    export_dir: str | None = None  # the SavedModel of mode 'export'


def launch(*, task_class: type, config: config_definitions.ExperimentConfig, mode: str, model_dir: str,
           distribution_strategy: Callable[[], tf.distribute.Strategy] = distribute.get_distribution_strategy,
           operative_config: Callable[[], str] | None = None, run_post_eval: bool = False,
           dry_run: bool = False, seed: int | None = None,
           export_config: saved_model.ExportConfig | None = None) -> LaunchResult:
    """Runs one experiment.

    Args:
      task_class: the Task class (e.g. MaskedLMTask); built with `config.task` and `model_dir`.
      config: the experiment configuration (task, trainer, runtime).
      mode: 'train', 'eval', 'train_and_eval', 'continuous_eval', or 'export': write a SavedModel on raw
        strings of a checkpoint of model_dir (research/export/saved_model.py); nothing else is written.
      model_dir: where checkpoints, summaries and operative_config.gin go.
      distribution_strategy: a callable returning the tf.distribute strategy; called first, before any
        other TensorFlow work (multi-worker strategies need that).
      operative_config: returns the configuration text saved as model_dir/operative_config.gin: at
        step 0, and again at the end, when it also lists every default that the run used.
      run_post_eval: also evaluate after training and return those logs.
      dry_run: only build the model and run it on one batch of each dataset (a quick check of a
        configuration before a long job); nothing is written.
      seed: when set, seeds Python, NumPy and TensorFlow (`keras.utils.set_random_seed`) right after the
        strategy is created: the same seed gives the same initial weights in every process and run.
      export_config: what mode 'export' writes (which checkpoint, where); None: ExportConfig().

    Only the chief writes model_dir (operative config included); the other workers of a multi-worker
    job write to temporary directories (research/core/train_lib.py).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not model_dir:
        raise ValueError("model_dir is empty: pass --model_dir or bind MODEL_DIR in the gin file")
    strategy = distribution_strategy()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    optimization.set_precision_policy(config.runtime)
    task = task_class(config.task, logging_dir=model_dir)
    if dry_run:
        return LaunchResult(model=_dry_run(task, strategy), eval_logs=None, model_dir=model_dir)
    if mode == "export":
        export_dir = saved_model.export_from_model_dir(task, config, model_dir, export_config)
        return LaunchResult(model=None, eval_logs=None, model_dir=model_dir, export_dir=export_dir)
    chief = distribute.is_chief(strategy)
    if chief:
        _check_writable(model_dir)
    logging.info("Running %s in mode %s under %s into %s", type(task).__name__, mode, type(strategy).__name__,
                 model_dir)
    model, eval_logs = train_lib.run_experiment(
        distribution_strategy=strategy, task=task, mode=mode, params=config, model_dir=model_dir,
        run_post_eval=run_post_eval, operative_config=operative_config() if operative_config else None)
    if operative_config and chief:
        with tf.io.gfile.GFile(os.path.join(model_dir, OPERATIVE_CONFIG_NAME), "w") as config_file:
            config_file.write(operative_config())
    return LaunchResult(model=model, eval_logs=eval_logs, model_dir=model_dir)


def _dry_run(task, strategy: tf.distribute.Strategy):
    """Builds the task's model and runs it on one batch of each configured dataset; returns the model."""
    with strategy.scope():
        model = task.build_model()
    for name in ("train_data", "validation_data"):
        data_config = getattr(task.task_config, name, None)
        if data_config is None:
            continue
        batch = next(iter(task.build_inputs(data_config)))
        features, _ = task.split_inputs(batch)
        model(features, training=False)
        logging.info("dry run: %s gives %s", name, {key: tuple(value.shape) for key, value in batch.items()})
    logging.info("dry run: %s with %d parameters", type(model).__name__, model.count_params())
    return model


def _check_writable(model_dir: str) -> None:
    """Fails before any work when model_dir cannot be created or written."""
    try:
        tf.io.gfile.makedirs(model_dir)
        probe = os.path.join(model_dir, ".write_probe")
        with tf.io.gfile.GFile(probe, "w") as probe_file:
            probe_file.write("ok")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as error:
        raise PermissionError(f"model_dir {model_dir!r} is not writable: {error}") from None
