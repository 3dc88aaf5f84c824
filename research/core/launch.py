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
from research.core import dry_run as dry_run_lib
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
    model_dir = absolute_path(model_dir)
    check_init_checkpoint(config.task)  # before anything is created: a failed start leaves nothing behind
    strategy = distribution_strategy()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    optimization.set_precision_policy(config.runtime)
    task = task_class(config.task, logging_dir=model_dir)
    if dry_run:
        return LaunchResult(model=dry_run_lib.dry_run(task, strategy), eval_logs=None, model_dir=model_dir)
    if mode == "export":
        export_dir = saved_model.export_from_model_dir(task, config, model_dir, export_config)
        return LaunchResult(model=None, eval_logs=None, model_dir=model_dir, export_dir=export_dir)
    chief = distribute.is_chief(strategy)
    if chief:
        _check_writable(model_dir)
    logging.info("Running %s in mode %s under %s into %s", type(task).__name__, mode, type(strategy).__name__,
                 model_dir)
    with distribute.parameter_server_failures(strategy, model_dir):
        model, eval_logs = train_lib.run_experiment(
            distribution_strategy=strategy, task=task, mode=mode, params=config, model_dir=model_dir,
            run_post_eval=run_post_eval, operative_config=operative_config() if operative_config else None)
    if operative_config and chief:
        with tf.io.gfile.GFile(os.path.join(model_dir, OPERATIVE_CONFIG_NAME), "w") as config_file:
            config_file.write(operative_config())
    return LaunchResult(model=model, eval_logs=eval_logs, model_dir=model_dir)


def absolute_path(path: str) -> str:
    """A local path made absolute against the working directory; URLs (gs://, s3://, ...) unchanged.

    The run resolves its directories once, at the start, so that checkpoints, logs and the printed
    summary name one place whatever the process does with its working directory later.
    """
    return path if "://" in path else os.path.abspath(path)


def check_init_checkpoint(task_config) -> None:
    """Fails when the task names an `init_checkpoint` that holds no checkpoint.

    Raises:
      FileNotFoundError: naming the path and what was looked for.
    """
    path = getattr(task_config, "init_checkpoint", "")
    if not path:
        return
    if tf.io.gfile.isdir(path):
        found = tf.train.latest_checkpoint(path) or tf.io.gfile.glob(os.path.join(path, "*.index"))
    else:
        found = tf.io.gfile.exists(path + ".index")
    if not found:
        raise FileNotFoundError(
            f"init_checkpoint {path!r} (relative to {os.getcwd()}) holds no checkpoint: give a directory with "
            f"ckpt-<step>.index files or a checkpoint prefix (with gin: INIT_CHECKPOINT), e.g. the pretraining "
            f"run's model_dir once it has finished")


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
