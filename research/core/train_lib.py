"""The run loop: `run_experiment` drives a Trainer through train / eval / train_and_eval / continuous_eval.

Model Garden's `official/core/train_lib.run_experiment` with Orbit's Controller folded in:

* Checkpoints: a `tf.train.CheckpointManager` over `trainer.checkpoint` in model_dir restores the latest
  checkpoint on start (weights, optimizer slots, global step, data position), so a restarted run
  continues from its step with the next batch (`Trainer.restart_train_data`); without one,
  `trainer.initialize()` runs (the task may load a pretrained encoder). A checkpoint that a crash left
  half-written (no index, truncated data, a state file pointing at missing files) is skipped with a
  warning and the previous one restored; if none restores, the run stops instead of starting over. Checkpoints
  are written every `checkpoint_interval` steps (checked at the end of each loop of `steps_per_loop`
  steps) as `ckpt-<global step>`, and once more at the end of training.
* Summaries: TensorBoard scalars under model_dir/train (loss, learning rate, metrics, steps/s,
  examples/s) and model_dir/eval (validation logs).
* One log line per loop: step, loss, steps/s, examples/s, estimated time left.
* A NaN or Inf training loss, or one above `loss_upper_bound`, raises `LossDivergedError` (a
  FloatingPointError) naming the step, before anything of that loop is saved: the last good
  checkpoint stays the latest. With `recovery_max_trials` > 0 the run instead restores the weights,
  optimizer and step of the last good checkpoint but not the data position, so the batches of the bad
  loop are skipped, at most that many times in a run.
* SIGTERM (preemption) or Ctrl-C: at the end of the loop under way a checkpoint is saved at the current
  step and the run raises `SystemExit(128 + signal number)`: 143 for SIGTERM, 130 for Ctrl-C. A second
  Ctrl-C exits at once, without a checkpoint (research/core/stop_signals.py).
"""
import math
import os
import re
import signal
import time
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from tensorflow.core.framework import summary_pb2

from research.core import base_trainer, distribute, export, stop_signals
from research.core.export import maybe_create_best_ckpt_exporter  # noqa: F401  (Model Garden's train_lib has it)

MODES = ("train", "eval", "train_and_eval", "continuous_eval", "train_and_post_eval")
PREEMPTED_EXIT_CODE = stop_signals.exit_code(signal.SIGTERM)  # 143
OPERATIVE_CONFIG_NAME = "operative_config.gin"
DEFAULT_CONTINUOUS_EVAL_TIMEOUT = 3600.0  # seconds without a new checkpoint before continuous_eval gives up
_MAX_STALLED_LOOPS = 20


class LossDivergedError(FloatingPointError):
    """The training loss became NaN, Inf or larger than `loss_upper_bound`."""


def _scalar_metadata() -> summary_pb2.SummaryMetadata:
    """TensorBoard's scalar-plugin metadata (what `tf.summary.scalar` writes, without needing tensorboard)."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    return metadata


def _to_host(value):
    """An eager tensor / variable / numpy scalar as a Python float (arrays stay numpy)."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    array = np.asarray(value)
    if array.shape == () and array.dtype.kind in "fiub":
        return float(array)
    return array


def _host_logs(logs) -> dict:
    return {name: _to_host(value) for name, value in (logs or {}).items()}


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _format_logs(logs: dict, skip=()) -> str:
    parts = []
    for name, value in sorted(logs.items()):
        if name not in skip and isinstance(value, float):
            parts.append(f"{name}: {value:.6g}")
    return ", ".join(parts)


def create_trainer(params, task, train: bool, evaluate: bool, checkpoint_exporter=None,
                   trainer_cls=base_trainer.Trainer) -> base_trainer.Trainer:
    """Builds the model, the optimizer (`task.create_optimizer`) and the Trainer, in the current scope."""
    model = task.build_model()
    dp_config = getattr(params.task, "differential_privacy_config", None)
    optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime, dp_config)
    return trainer_cls(params, task, model=model, optimizer=optimizer, train=train, evaluate=evaluate,
                       checkpoint_exporter=checkpoint_exporter)


class _ExperimentRunner:
    """The loops of run_experiment over one Trainer (Orbit's Controller, minus what we do not use)."""

    def __init__(self, strategy, trainer, params, model_dir, save_summary, operative_config, write_dir=None):
        self.strategy = strategy
        self.trainer = trainer
        self.params = params
        self.config = params.trainer
        self.model_dir = model_dir  # restored from (the chief's checkpoints)
        self.write_dir = write_dir or model_dir  # written to: model_dir on the chief, a temporary dir elsewhere
        self.is_chief = self.write_dir == model_dir
        self.save_summary = save_summary and self.is_chief
        self.operative_config = operative_config if self.is_chief else None
        self.checkpoint_manager = tf.train.CheckpointManager(
            trainer.checkpoint, directory=self.write_dir, max_to_keep=self.config.max_to_keep,
            step_counter=trainer.global_step, checkpoint_interval=self.config.checkpoint_interval,
            init_fn=trainer.initialize)
        train_data = getattr(params.task, "train_data", None)
        self.global_batch_size = getattr(train_data, "global_batch_size", None)
        self._writers = {}
        self._last_saved_step = None
        self._last_good_checkpoint = None  # restored or saved by this run: what a divergence rolls back to
        self.stop_signals = None  # a stop_signals.StopSignals while training
        self._recovery_trials = 0

    # -- helpers -----------------------------------------------------------------------------------

    def step(self) -> int:
        return int(self.trainer.global_step.numpy())

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.model_dir, name))
        return self._writers[name]

    def write_summaries(self, name: str, logs: dict, step: int):
        if not self.save_summary:
            return
        metadata = _scalar_metadata()
        with self._writer(name).as_default(step=step):
            for key, value in logs.items():
                if isinstance(value, float):
                    tf.summary.write(key, tf.constant(value, tf.float32), metadata=metadata)
        self._writer(name).flush()

    def close(self):
        for writer in self._writers.values():
            writer.close()

    def latest_checkpoint(self) -> str | None:
        """The latest checkpoint of model_dir (the chief's, also for the other workers)."""
        return tf.train.latest_checkpoint(self.model_dir)

    def checkpoint_candidates(self) -> list[str]:
        """Checkpoint prefixes of model_dir, newest step first: the state file's and any `ckpt-<n>.index`.

        The glob matters: a `checkpoint` state file lost or pointing at a checkpoint whose files are
        missing must not make a restarted run start over.
        """
        paths = set()
        try:
            state = tf.train.get_checkpoint_state(self.model_dir)
        except (tf.errors.OpError, ValueError) as error:  # an unreadable state file: the glob still finds them
            logging.warning("Cannot read the checkpoint state file of %s: %s", self.model_dir, error)
            state = None
        if state is not None:
            paths.update(path for path in [state.model_checkpoint_path, *state.all_model_checkpoint_paths] if path)
        # The state file's paths come back already joined onto model_dir (tf.train.get_checkpoint_state
        # prepends it to relative ones), as do the glob's: joining again broke relative model_dirs.
        paths.update(path[:-len(".index")] for path in tf.io.gfile.glob(os.path.join(self.model_dir, "ckpt-*.index")))

        def number(path):
            match = re.search(r"-(\d+)$", path)
            return int(match.group(1)) if match else -1

        return sorted(paths, key=number, reverse=True)

    def restore(self, for_training: bool) -> int:
        """Restores the newest restorable checkpoint of model_dir, or calls trainer.initialize(); returns the step.

        A checkpoint that cannot be restored (index missing, data file truncated or corrupt: a crash while
        it was written) is skipped with a warning naming it, and the previous one is restored. When
        checkpoints exist but none restores, the run stops rather than silently starting over.
        """
        failures = []
        for path in self.checkpoint_candidates():
            if not tf.io.gfile.exists(path + ".index"):
                failures.append(f"{path}: no {os.path.basename(path)}.index (incompletely written)")
                continue
            try:
                status = self.trainer.checkpoint.restore(path)
                if not for_training:
                    status.expect_partial()  # the optimizer slots are never built when only evaluating
                has_data_position = tf.train.load_checkpoint(path).has_tensor(
                    "train_batches/.ATTRIBUTES/VARIABLE_VALUE")
            except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:  # IndexError: truncated data
                failures.append(f"{path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
                continue
            for failure in failures:
                logging.warning("Skipped a checkpoint that cannot be restored: %s", failure)
            step = self.step()
            if not has_data_position:  # written before train_batches existed: one batch per step
                self.trainer.train_batches.assign(step)
            self._last_saved_step = step
            self._last_good_checkpoint = path
            logging.info("Restored %s (step %d, %d training batches taken)", path, step,
                         int(self.trainer.train_batches.numpy()))
            if for_training:
                self.trainer.restart_train_data()
            return step
        if failures:
            raise RuntimeError(f"model_dir {self.model_dir} holds checkpoints but none can be restored; move them "
                               f"away to start over: " + "; ".join(failures))
        self.trainer.initialize()
        logging.info("No checkpoint in %s: initialized the model (trainer.initialize)", self.model_dir)
        return self.step()

    def save(self, step: int, reason: str):
        """Saves a checkpoint (every worker must: the non-chief ones write to their temporary dir)."""
        if self._last_saved_step == step and self.checkpoint_manager.latest_checkpoint:
            return
        path = self.checkpoint_manager.save(checkpoint_number=step, check_interval=False)
        self._last_saved_step = step
        self._last_good_checkpoint = path
        logging.info("Saved checkpoint %s (%s)", path, reason)

    def write_operative_config(self):
        if self.operative_config is None:
            return
        path = os.path.join(self.model_dir, OPERATIVE_CONFIG_NAME)
        if not tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "w") as config_file:
                config_file.write(self.operative_config)

    def stop_requested(self) -> bool:
        """True after SIGTERM or Ctrl-C (research/core/stop_signals.py)."""
        return self.stop_signals is not None and self.stop_signals.requested is not None

    def save_and_exit(self, step: int):
        """Saves a checkpoint at `step` and exits with 128 + the stop signal's number."""
        signum = self.stop_signals.requested
        self.save(step, f"stopped by {signal.Signals(signum).name}")
        self.close()
        raise SystemExit(stop_signals.exit_code(signum))

    # -- training ----------------------------------------------------------------------------------

    def _check_loss(self, logs: dict, step: int) -> bool:
        """True when the loop's loss is fine; False after a recovery; raises when it diverged for good."""
        loss = logs.get("training_loss")
        if loss is None or (math.isfinite(loss) and loss <= self.config.loss_upper_bound):
            return True
        what = f"{loss}" if not math.isfinite(loss) else f"{loss:.6g} > loss_upper_bound={self.config.loss_upper_bound:g}"
        latest = self._last_good_checkpoint or self.latest_checkpoint()
        if self._recovery_trials < self.config.recovery_max_trials and latest:
            self._recovery_trials += 1
            # Weights, optimizer and step go back; the data position (train_batches) does not, so the
            # batches of the bad loop are skipped, and the next checkpoint records that.
            self.trainer.weights_checkpoint.restore(latest).expect_partial()
            logging.warning("Training loss %s in the loop ending at step %d: restored %s (recovery %d of %d); "
                            "training goes on from step %d with the data after batch %d", what, step, latest,
                            self._recovery_trials, self.config.recovery_max_trials, self.step(),
                            int(self.trainer.train_batches.numpy()))
            self._last_saved_step = self.step()
            return False
        raise LossDivergedError(
            f"Training loss diverged: {what} in the loop ending at step {step}; nothing of this loop was "
            f"saved (latest checkpoint: {latest or 'none'})")

    def train(self, target_step: int, checkpoint_at_completion: bool = True):
        """Runs loops of steps_per_loop steps until global_step reaches target_step."""
        step = self.step()
        stalled = 0
        while step < target_step:
            if self.stop_requested():  # the signal came during an evaluation
                self.save_and_exit(step)
            num_steps = min(self.config.steps_per_loop, target_step - step)
            start = time.monotonic()
            logs = _host_logs(self.trainer.train(num_steps))
            elapsed = max(time.monotonic() - start, 1e-9)
            new_step = self.step()
            if not self._check_loss(logs, new_step):
                step = self.step()
                continue
            stalled = stalled + 1 if new_step == step else 0
            if stalled >= _MAX_STALLED_LOOPS:
                raise RuntimeError(f"global_step (optimizer.iterations) stayed at {step} for {stalled} loops: "
                                   f"does the task's train_step call optimizer.apply_gradients?")
            steps_per_second = num_steps / elapsed
            logs["steps_per_second"] = steps_per_second
            if self.global_batch_size:
                logs["examples_per_second"] = steps_per_second * self.global_batch_size
            self._log_train(logs, new_step, steps_per_second)
            interval = self.config.summary_interval
            if new_step // interval > step // interval or new_step >= target_step:
                self.write_summaries("train", logs, new_step)
            if new_step - (self._last_saved_step or 0) >= self.config.checkpoint_interval:
                self.save(new_step, "checkpoint_interval")
            step = new_step
            if self.stop_requested():
                self.save_and_exit(step)
        if checkpoint_at_completion:
            self.save(step, "end of training")

    def _log_train(self, logs: dict, step: int, steps_per_second: float):
        examples = logs.get("examples_per_second")
        eta = (self.config.train_steps - step) / steps_per_second if steps_per_second > 0 else float("inf")
        logging.info("train | step: %d/%d | loss: %.6g | steps/s: %.2f | examples/s: %s | eta: %s | %s",
                     step, self.config.train_steps, logs.get("training_loss", float("nan")), steps_per_second,
                     "-" if examples is None else f"{examples:.1f}", _format_duration(eta),
                     _format_logs(logs, skip=("training_loss", "steps_per_second", "examples_per_second")))

    # -- evaluation --------------------------------------------------------------------------------

    def evaluate(self) -> dict:
        start = time.monotonic()
        logs = _host_logs(self.trainer.evaluate(self.config.validation_steps))
        step = self.step()
        logs_to_write = dict(logs, eval_seconds=time.monotonic() - start)
        self.write_summaries("eval", logs_to_write, step)
        logging.info("eval | step: %d | %s", step, _format_logs(logs))
        return logs

    def continuous_eval(self) -> dict:
        """Evaluates each new checkpoint of model_dir; stops after the one at train_steps."""
        train_steps = self.config.train_steps
        timeout = getattr(self.config, "continuous_eval_timeout", DEFAULT_CONTINUOUS_EVAL_TIMEOUT)
        logs = {}
        for path in tf.train.checkpoints_iterator(self.model_dir, timeout=timeout,
                                                  timeout_fn=lambda: self.step() >= train_steps):
            try:
                self.trainer.checkpoint.restore(path).expect_partial()
            except (tf.errors.OpError, ValueError) as error:
                logging.warning("Checkpoint %s vanished or cannot be read; not evaluated: %s", path, error)
                continue
            logging.info("continuous_eval: evaluating %s (step %d)", path, self.step())
            logs = self.evaluate()
            if self.step() >= train_steps:
                break
        return logs


def run_experiment(*, distribution_strategy: tf.distribute.Strategy, task, mode: str, params, model_dir: str,
                   run_post_eval: bool = False, save_summary: bool = True, trainer=None,
                   operative_config: str | None = None) -> tuple[Any, dict]:
    """Runs train/eval configured by the experiment params.

    Args:
      distribution_strategy: the tf.distribute.Strategy to run under.
      task: a research.core.base_task.Task.
      mode: 'train', 'eval', 'train_and_eval', 'continuous_eval' (evaluate each new checkpoint of
        model_dir until the one at train_steps) or 'train_and_post_eval'.
      params: the ExperimentConfig.
      model_dir: checkpoints, summaries (train/, eval/) and operative_config.gin go here.
      run_post_eval: also evaluate once after training.
      save_summary: write TensorBoard summaries.
      trainer: a Trainer to use; None builds model, optimizer, datasets and Trainer inside the strategy's
        scope.
      operative_config: text saved as model_dir/operative_config.gin when the file is not there yet.

    Returns:
      (model, eval_logs): the trained model and the logs of the last evaluation ({} when none ran).

    Raises:
      LossDivergedError: the training loss became NaN/Inf or exceeded loss_upper_bound.
      SystemExit(143 or 130): SIGTERM or Ctrl-C (SIGINT) was received during training; a checkpoint was
        saved first (a second Ctrl-C exits at once with 130, without one).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not model_dir:
        raise ValueError("run_experiment: model_dir is empty")
    strategy = distribution_strategy
    is_training = mode.startswith("train")
    is_evaluating = "eval" in mode or run_post_eval
    write_dir = distribute.task_write_dir(model_dir, strategy)
    if write_dir == model_dir:
        tf.io.gfile.makedirs(model_dir)
    else:
        logging.info("Not the chief: checkpoints go to %s, removed at the end", write_dir)
    try:
        with strategy.scope():
            if trainer is None:
                exporter = export.maybe_create_best_ckpt_exporter(params, write_dir) if is_evaluating else None
                trainer = create_trainer(params, task, train=is_training, evaluate=is_evaluating,
                                         checkpoint_exporter=exporter)
            runner = _ExperimentRunner(strategy, trainer, params, model_dir, save_summary, operative_config,
                                       write_dir=write_dir)
            eval_logs = _run_mode(runner, mode, params, is_training, run_post_eval)
    finally:
        if write_dir != model_dir:
            tf.io.gfile.rmtree(write_dir)
            logging.info("Removed the temporary directory %s", write_dir)
    return trainer.model, eval_logs


def _run_mode(runner: _ExperimentRunner, mode: str, params, is_training: bool, run_post_eval: bool) -> dict:
    """Restores, then trains and/or evaluates as `mode` says; returns the last evaluation logs."""
    eval_logs = {}
    try:
        if mode == "continuous_eval":
            return runner.continuous_eval()
        step = runner.restore(for_training=is_training)
        if is_training:
            if step == 0:
                runner.write_operative_config()
            with stop_signals.StopSignals() as runner.stop_signals:
                logging.info("Training from step %d to %d (SIGTERM or Ctrl-C: checkpoint at the end of the loop "
                             "and stop)", step, params.trainer.train_steps)
                if mode == "train_and_eval":
                    eval_logs = _train_and_eval(runner, params.trainer)
                else:
                    runner.train(params.trainer.train_steps)
        if mode == "eval" or run_post_eval or mode == "train_and_post_eval":
            eval_logs = runner.evaluate()
    finally:
        runner.close()
    return eval_logs


def _train_and_eval(runner: _ExperimentRunner, config) -> dict:
    """Trains to train_steps, evaluating every validation_interval steps; returns the last eval logs."""
    eval_logs = {}
    step = runner.step()
    while step < config.train_steps:
        target = min(config.train_steps, (step // config.validation_interval + 1) * config.validation_interval)
        runner.train(target, checkpoint_at_completion=False)
        eval_logs = runner.evaluate()
        step = runner.step()
    runner.save(step, "end of training")
    return eval_logs
