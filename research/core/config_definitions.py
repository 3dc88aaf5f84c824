"""The experiment-level configuration: trainer schedule, runtime and the task's own config.

Model Garden's Trainer reads `config.trainer` and `config.runtime`, and the task reads `config.task`;
these dataclasses keep those names. Gin fills them (gin/runs/*.gin); each validates itself and names
the offending field.
"""
import dataclasses
from typing import Any

from research.core.optimization import OptimizerConfig, RuntimeConfig

METRIC_COMPARISONS = ("higher", "lower")


def require(condition: bool, message: str) -> None:
    """Raises ValueError(message) unless `condition`: how every config dataclass validates a field."""
    if not condition:
        raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """The training schedule: steps, loops, checkpoints, summaries, validation, best-checkpoint export.

    Attributes:
      optimizer_config: the optimizer and its learning-rate schedule.
      train_steps: total training steps of the run.
      steps_per_loop: steps run inside one call of `Trainer.train` (one log line per loop).
      checkpoint_interval: steps between checkpoints (a multiple of steps_per_loop is best).
      summary_interval: steps between TensorBoard summaries of the training logs.
      validation_interval: steps between evaluations in 'train_and_eval'.
      validation_steps: evaluation steps; -1 runs until the validation data is exhausted.
      max_to_keep: checkpoints kept in model_dir.
      use_tf_function: run steps inside tf.function.
      use_tf_while_loop: run the steps of a loop inside one tf.while_loop (needs a step count).
      train_tf_while_loop, eval_tf_while_loop, train_tf_function, eval_tf_function: Model Garden's
        separate switches for the training and the evaluation loops; None (the default) follows
        use_tf_while_loop / use_tf_function.
      jit_compile: compile each replica's training step (forward, loss, backward, optimizer update,
        metrics) with XLA (`tf.function(jit_compile=True)`); every op then runs its XLA path (`auto`
        backends: the reference twins, the masked-LM head's chunked form). False: on CPU the native
        step measured faster for MLM tiny and small in float32 and mixed_bfloat16 (XLA 0.22x-0.76x;
        benchmarks/RESULTS.md, "Training step under XLA"); on GPU or TPU set it True.
      best_checkpoint_export_subdir: when set with best_checkpoint_eval_metric, the best checkpoint by
        that metric is exported to model_dir/<subdir>.
      best_checkpoint_eval_metric: the evaluation metric deciding the best checkpoint.
      best_checkpoint_metric_comp: 'higher' or 'lower' is better.
      best_checkpoint_export_saved_model: also write the best model as a SavedModel on raw strings to
        model_dir/<subdir>/saved_model (research/export/saved_model.py), replaced at each improvement.
      loss_upper_bound: a training loss above this (or NaN/Inf) stops the run.
      recovery_max_trials: on a bad loss, roll back to the last good checkpoint and skip ahead this many
        times before giving up (0: stop at once).
    """
    optimizer_config: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train_steps: int = 1000
    steps_per_loop: int = 100
    checkpoint_interval: int = 1000
    summary_interval: int = 100
    validation_interval: int = 1000
    validation_steps: int = -1
    max_to_keep: int = 5
    use_tf_function: bool = True
    use_tf_while_loop: bool = False
    train_tf_while_loop: bool | None = None
    eval_tf_while_loop: bool | None = None
    train_tf_function: bool | None = None
    eval_tf_function: bool | None = None
    jit_compile: bool = False
    best_checkpoint_export_subdir: str = ""
    best_checkpoint_eval_metric: str = ""
    best_checkpoint_metric_comp: str = "higher"
    best_checkpoint_export_saved_model: bool = False
    loss_upper_bound: float = 1e6
    recovery_max_trials: int = 0

    def __post_init__(self):
        for name in ("train_steps", "steps_per_loop", "checkpoint_interval", "summary_interval",
                     "validation_interval", "max_to_keep"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, f"TrainerConfig.{name} must be an int >= 1, got {value!r}")
        require(isinstance(self.jit_compile, bool),
                f"TrainerConfig.jit_compile must be True or False, got {self.jit_compile!r}")
        require(isinstance(self.validation_steps, int) and (self.validation_steps >= 1 or self.validation_steps == -1),
                 f"TrainerConfig.validation_steps must be -1 or >= 1, got {self.validation_steps!r}")
        require(self.best_checkpoint_metric_comp in METRIC_COMPARISONS,
                 f"TrainerConfig.best_checkpoint_metric_comp must be one of {METRIC_COMPARISONS}, "
                 f"got {self.best_checkpoint_metric_comp!r}")
        require(isinstance(self.best_checkpoint_export_saved_model, bool),
                 "TrainerConfig.best_checkpoint_export_saved_model must be True or False, got "
                 f"{self.best_checkpoint_export_saved_model!r}")
        require(self.loss_upper_bound > 0,
                 f"TrainerConfig.loss_upper_bound must be > 0, got {self.loss_upper_bound!r}")
        require(isinstance(self.recovery_max_trials, int) and self.recovery_max_trials >= 0,
                 f"TrainerConfig.recovery_max_trials must be an int >= 0, got {self.recovery_max_trials!r}")
        for name in ("use_tf_function", "use_tf_while_loop"):
            require(isinstance(getattr(self, name), bool),
                     f"TrainerConfig.{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("train_tf_while_loop", "eval_tf_while_loop", "train_tf_function", "eval_tf_function"):
            value = getattr(self, name)
            require(value is None or isinstance(value, bool),
                     f"TrainerConfig.{name} must be None, True or False, got {value!r}")
        for side in ("train", "eval"):
            require(not (self.loop_options(side)[1] and not self.loop_options(side)[0]),
                     f"TrainerConfig: a {side} loop in tf.while_loop ({side}_tf_while_loop / use_tf_while_loop) "
                     f"needs tf.function ({side}_tf_function / use_tf_function)")

    def loop_options(self, side: str) -> tuple[bool, bool]:
        """(tf_function, tf_while_loop) of the 'train' or 'eval' loop."""
        function = getattr(self, f"{side}_tf_function")
        while_loop = getattr(self, f"{side}_tf_while_loop")
        return (self.use_tf_function if function is None else function,
                self.use_tf_while_loop if while_loop is None else while_loop)


@dataclasses.dataclass
class DataConfig:
    """A generic input config, Model Garden's `cfg.DataConfig` fields that any task's inputs may read.

    Our own tasks have typed data configs of their own (PretrainDataConfig, ClassificationDataConfig);
    this one is a base for a ported task's config (mutable, as Model Garden's).
    """
    input_path: str = ""
    global_batch_size: int = 0
    is_training: bool | None = None
    drop_remainder: bool = True
    shuffle_buffer_size: int = 100
    seed: int | None = None


@dataclasses.dataclass
class TaskConfig:
    """A generic task config, Model Garden's `cfg.TaskConfig`: a base for a ported task's own config
    (`@dataclasses.dataclass class MyTaskConfig(TaskConfig): ...`; mutable, as Model Garden's)."""
    init_checkpoint: str = ""
    model: Any = None
    train_data: Any = dataclasses.field(default_factory=DataConfig)
    validation_data: Any = dataclasses.field(default_factory=DataConfig)
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the task's config, the trainer schedule and the runtime."""
    task: Any = dataclasses.field(default_factory=TaskConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
