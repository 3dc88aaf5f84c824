"""The Trainer: Model Garden's standard trainer and evaluator over a Task, with Orbit's loops inlined.

`Trainer(config, task, model, optimizer, train=True, evaluate=True, ...)` keeps Model Garden's
methods and arguments (`train(num_steps)`, `evaluate(num_steps)`, the begin/step/end hooks, the async
trio for ParameterServerStrategy), so a Model Garden user's code ports by changing its imports.
Differences worth knowing:

* `global_step` is the optimizer's `iterations` variable: Keras 3 increments it in `apply_gradients`.
  Under a dynamic loss scale (`LossScaleOptimizer`) a step whose gradients overflow is skipped and does
  not count, so `train(n)` may advance `global_step` by fewer than n steps.
* The loops (Orbit's `create_loop_fn` / `create_tf_while_loop_fn`) live in this module; Orbit is not a
  dependency.
* The data position is part of the checkpoint: `train_batches` counts the training batches taken from
  the dataset (a checkpointed int64 variable, apart from `global_step`, which a skipped loss-scale
  step or a divergence rollback leaves behind). After a restore, `restart_train_data()` rebuilds the
  training dataset with `.skip(train_batches)`: with a deterministic dataset (seeded shuffles, masks
  seeded by batch index as in research/data/pretrain_input.py) a restarted run sees exactly the
  batches an uninterrupted run would have. (A tf.distribute DistributedIterator cannot be saved in a
  tf.train.Checkpoint; skipping costs one pass of the input pipeline over the skipped batches.)
* `train_loop_end()` returns `training_loss` (the mean over the loop; NaN or Inf when any step's loss
  was), `learning_rate` and every train metric, as eager tensors or floats. The run loop
  (research/core/train_lib.py) decides what a bad loss means.
"""
import inspect
from typing import Callable

import keras
import tensorflow as tf
from absl import logging

from research.core import optimization

_RESERVED_CHECKPOINT_NAMES = ("model", "optimizer", "global_step", "save_counter", "train_batches", "rng_states")


def _is_parameter_server(strategy) -> bool:
    return isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)


def _python_steps(num_steps) -> int:
    if isinstance(num_steps, (tf.Tensor, tf.Variable)):
        return int(num_steps.numpy())
    return int(num_steps)


def _create_loop_fn(step_fn: Callable) -> Callable:
    """A Python loop of `step_fn(iterator)`; num_steps == -1 runs until the iterator is exhausted.

    Returns `state` folded by `reduce_fn(state, step_outputs)` over the steps (Orbit's `create_loop_fn`).
    """

    def loop_fn(iterator, num_steps, state=None, reduce_fn=None):
        num_steps = _python_steps(num_steps)
        step = 0
        try:
            while num_steps == -1 or step < num_steps:
                outputs = step_fn(iterator)
                if reduce_fn is not None:
                    state = reduce_fn(state, outputs)
                step += 1
        except (StopIteration, tf.errors.OutOfRangeError):
            logging.info("The iterator was exhausted after %d steps.", step)
        return state

    return loop_fn


def _create_tf_while_loop_fn(step_fn: Callable) -> Callable:
    """`num_steps` calls of `step_fn(iterator)` in one tf.while_loop (wrap the result in tf.function)."""

    def loop_fn(iterator, num_steps):
        for _ in tf.range(num_steps):
            step_fn(iterator)

    return loop_fn


def _create_tf_while_loop_fn_with_state(step_fn: Callable) -> Callable:
    """Like `_create_tf_while_loop_fn`, folding the outputs with `reduce_fn` (its state must be tensors)."""

    def relaxed_shapes(state):
        return tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), state)

    def loop_fn(iterator, num_steps, state, reduce_fn):
        for _ in tf.range(num_steps):
            tf.autograph.experimental.set_loop_options(shape_invariants=[(state, relaxed_shapes(state))])
            state = reduce_fn(state, step_fn(iterator))
        return state

    return loop_fn


def _batch_examples(inputs) -> tf.Tensor:
    """float32 scalar: the examples in one replica's batch (the leading dimension of its first tensor).

    The last evaluation batch of a tf.distribute iterator can be empty (partial-batch handling hands
    replicas without data a batch of 0 examples; a tf.function step over an exhausted iterator runs
    once more on such a batch before OutOfRangeError). Weighting by this count keeps those batches out
    of the averages.
    """
    return tf.cast(tf.shape(tf.nest.flatten(inputs)[0])[0], tf.float32)


def _loop_options(trainer_config, side: str) -> tuple[bool, bool]:
    """(tf_function, tf_while_loop) of the 'train' or 'eval' loop; a config without Model Garden's
    separate switches uses use_tf_function / use_tf_while_loop for both."""
    if hasattr(trainer_config, "loop_options"):
        return trainer_config.loop_options(side)
    return trainer_config.use_tf_function, trainer_config.use_tf_while_loop


def _steps_tensor(num_steps) -> tf.Tensor:
    return tf.convert_to_tensor(num_steps, dtype=tf.int32)


class _AsyncTrainer:
    """The async part of a trainer (Model Garden's `_AsyncTrainer`): a ClusterCoordinator under a
    ParameterServerStrategy, and datasets distributed per worker. Needs `self._strategy`."""

    def init_async(self):
        """Initializes the async state: training is async under a ParameterServerStrategy."""
        self._is_async = _is_parameter_server(self._strategy)
        self._coordinator = None

    def coordinator_for_async(self) -> tf.distribute.experimental.coordinator.ClusterCoordinator:
        """The ClusterCoordinator scheduling steps on the workers (ParameterServerStrategy only)."""
        if self._coordinator is None:
            if not _is_parameter_server(self._strategy):
                raise RuntimeError(f"coordinator_for_async() needs a ParameterServerStrategy; this trainer runs "
                                   f"under {type(self._strategy).__name__}")
            self._coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(self._strategy)
        return self._coordinator

    def join(self):
        """Joins all async steps; a no-op without a coordinator."""
        if self._coordinator is not None:
            self._coordinator.join()

    def distribute_dataset(self, dataset_or_fn, *args, **kwargs):
        """Creates a tf.distribute.DistributedDataset.

        Args:
          dataset_or_fn: a tf.data.Dataset, or a function returning one. A function with an argument
            named `input_context` goes through `strategy.distribute_datasets_from_function` (it receives
            the tf.distribute.InputContext and batches per replica); any other function is called and
            its dataset handed to `strategy.experimental_distribute_dataset` (global batches split
            across replicas).
          *args: positional arguments passed through to dataset_or_fn.
          **kwargs: keyword arguments passed through to dataset_or_fn.

        Returns:
          A distributed dataset (per-worker datasets under a ParameterServerStrategy).
        """
        if self._is_async:
            logging.info("ParameterServerStrategy: one dataset per worker (ClusterCoordinator.create_per_worker_dataset)")

            def per_worker_dataset_fn():
                return self._make_distributed_dataset(dataset_or_fn, *args, **kwargs)
            return self.coordinator_for_async().create_per_worker_dataset(tf.function(per_worker_dataset_fn))
        return self._make_distributed_dataset(dataset_or_fn, *args, **kwargs)

    def _make_distributed_dataset(self, dataset_or_fn, *args, **kwargs):
        strategy = self._strategy
        if isinstance(dataset_or_fn, tf.data.Dataset):
            return strategy.experimental_distribute_dataset(dataset_or_fn)
        if not callable(dataset_or_fn):
            raise ValueError(f"dataset_or_fn must be a tf.data.Dataset or a callable, got {type(dataset_or_fn)}")
        try:
            takes_context = "input_context" in inspect.signature(dataset_or_fn).parameters
        except (TypeError, ValueError):
            takes_context = False
        if takes_context:
            def dataset_fn(input_context):
                return dataset_or_fn(*args, input_context=input_context, **kwargs)
            return strategy.distribute_datasets_from_function(dataset_fn)
        return strategy.experimental_distribute_dataset(dataset_or_fn(*args, **kwargs))


class Trainer(_AsyncTrainer, tf.Module):
    """Implements the common trainer shared for TensorFlow models.

    Args:
      config: an ExperimentConfig; `config.trainer` decides the loops (`use_tf_function`,
        `use_tf_while_loop`), `config.task.train_data` / `validation_data` feed `task.build_inputs` when
        no dataset is given.
      task: a research.core.base_task.Task.
      model: the keras.Model the task trains (built by `task.build_model()`).
      optimizer: a keras optimizer (see `Task.create_optimizer`); its `iterations` is the global step.
      train: build the training dataset and metrics.
      evaluate: build the validation dataset and metrics.
      train_dataset: a tf.data.Dataset or DistributedDataset overriding the task's training inputs.
      validation_dataset: likewise for validation.
      checkpoint_exporter: an object with `maybe_export_checkpoint(checkpoint, eval_logs, global_step)`
        (research.core.export.BestCheckpointExporter), fed by `eval_end`.

    Create the trainer (and the model and optimizer) inside `strategy.scope()`; the trainer uses the
    strategy of the scope it is created in.
    """

    def __init__(self, config, task, model: keras.Model, optimizer, train: bool = True, evaluate: bool = True,
                 train_dataset=None, validation_dataset=None, checkpoint_exporter=None):
        super().__init__(name="trainer")
        self._strategy = tf.distribute.get_strategy()
        self._validate_params(config, check_train_data=train and train_dataset is None,
                              check_validation_data=evaluate and validation_dataset is None)
        self._config = config
        self._task = task
        self._model = model
        self._optimizer = optimizer
        self._checkpoint_exporter = checkpoint_exporter
        trainer_config = config.trainer
        self._train_tf_function, self._train_tf_while_loop = _loop_options(trainer_config, "train")
        self._eval_tf_function, self._eval_tf_while_loop = _loop_options(trainer_config, "eval")
        self._jit_compile = getattr(trainer_config, "jit_compile", False)  # Model Garden's configs lack it
        self._replica_train_step = None
        with self._strategy.scope():
            self._train_batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_batches",
                                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self._train_loss = keras.metrics.Mean("training_loss", dtype="float32")
            self._validation_loss = keras.metrics.Mean("validation_loss", dtype="float32")
        self._train_metrics = []
        self._validation_metrics = []
        self._train_dataset = None
        self._train_dataset_source = None  # what restart_train_data() rebuilds the training dataset from
        self._eval_dataset = None
        self._train_iter = None
        self._train_loop_fn = None
        self._eval_loop_fn = None
        self._eval_loop_has_state = None
        self.init_async()
        if self._is_async and not (self._train_tf_while_loop and self._eval_tf_while_loop):
            # ClusterCoordinator.schedule dispatches one tf.function to a worker: the steps of a loop go
            # there as one tf.while_loop.
            logging.info("ParameterServerStrategy: running the loops as tf.while_loop in tf.function")
            self._train_tf_function = self._train_tf_while_loop = True
            self._eval_tf_function = self._eval_tf_while_loop = True
        if train:
            with self._strategy.scope():
                self._train_metrics = list(task.build_metrics(training=True) or [])
                self._maybe_build_optimizer()
            if train_dataset is None:
                self._train_dataset_source = (task.build_inputs, config.task.train_data)
                self._train_dataset = self.distribute_dataset(task.build_inputs, config.task.train_data)
            else:
                if isinstance(train_dataset, tf.data.Dataset):
                    self._train_dataset_source = (train_dataset,)
                self._train_dataset = train_dataset
        if evaluate:
            with self._strategy.scope():
                self._validation_metrics = list(task.build_metrics(training=False) or [])
            self._eval_dataset = validation_dataset if validation_dataset is not None else self.distribute_dataset(
                task.build_inputs, config.task.validation_data)

    def _maybe_build_optimizer(self):
        """Creates the optimizer's slot variables now, eagerly, when the model's variables exist.

        Created lazily inside the first tf.function step instead, they cannot be lifted out of the
        function under MirroredStrategy ("You must feed a value for placeholder tensor 'cond/...'").
        A checkpoint restored later still reaches them (restore assigns them directly).
        """
        variables = self._model.trainable_variables
        if variables and not getattr(self._optimizer, "built", True):
            self._optimizer.build(variables)

    @staticmethod
    def _validate_params(config, check_train_data: bool, check_validation_data: bool):
        for name in ("trainer", "runtime", "task"):
            if not hasattr(config, name):
                raise AttributeError(f"Trainer: the config has no `{name}` (expected an ExperimentConfig)")
        if check_train_data and getattr(config.task, "train_data", None) is None:
            raise AttributeError("Trainer(train=True) without train_dataset needs config.task.train_data")
        if check_validation_data and getattr(config.task, "validation_data", None) is None:
            raise AttributeError("Trainer(evaluate=True) without validation_dataset needs config.task.validation_data")

    @property
    def strategy(self) -> tf.distribute.Strategy:
        return self._strategy

    @property
    def config(self):
        return self._config

    @property
    def task(self):
        return self._task

    @property
    def model(self) -> keras.Model:
        return self._model

    @property
    def optimizer(self):
        return self._optimizer

    @property
    def global_step(self):
        """The optimizer's `iterations` variable (int64 scalar)."""
        return self._optimizer.iterations

    @property
    def train_batches(self) -> tf.Variable:
        """The training batches taken from the dataset so far (int64 scalar; checkpointed)."""
        return self._train_batches

    def restart_train_data(self, start_batch: int | None = None) -> bool:
        """Rebuilds the training dataset so that it starts at batch `start_batch` (default: train_batches).

        Call it after restoring a checkpoint: the next training batch is then the one an uninterrupted
        run would take next, when the dataset is deterministic. Returns False (and logs why) when the
        training dataset cannot be rebuilt (a distributed dataset was passed in).
        """
        start = int(self._train_batches.numpy()) if start_batch is None else int(start_batch)
        if self._train_dataset_source is None:
            if start:
                logging.warning("The training dataset was passed in already distributed: it cannot skip to batch %d "
                                "and restarts from its beginning", start)
            return False
        if isinstance(self._train_dataset_source[0], tf.data.Dataset):
            dataset = self._train_dataset_source[0]
            self._train_dataset = dataset.skip(start) if start else dataset
        else:
            build_inputs, data_config = self._train_dataset_source
            if start:
                def build_inputs_from_start(params, input_context=None):
                    return build_inputs(params, input_context=input_context).skip(start)
                self._train_dataset = self.distribute_dataset(build_inputs_from_start, data_config)
            else:
                self._train_dataset = self.distribute_dataset(build_inputs, data_config)
        self._train_iter = None
        if start:
            logging.info("Training data restarts at batch %d (skipping the batches already trained on)", start)
        return True

    @property
    def train_metrics(self) -> list:
        return self._train_metrics

    @property
    def validation_metrics(self) -> list:
        return self._validation_metrics

    @property
    def train_loss(self) -> keras.metrics.Mean:
        return self._train_loss

    @property
    def validation_loss(self) -> keras.metrics.Mean:
        return self._validation_loss

    @property
    def checkpoint_exporter(self):
        return self._checkpoint_exporter

    @property
    def train_dataset(self):
        return self._train_dataset

    @property
    def eval_dataset(self):  # Orbit's name for the validation dataset
        return self._eval_dataset

    @property
    def checkpoint(self) -> tf.train.Checkpoint:
        """A tf.train.Checkpoint of model, optimizer, global_step, train_batches and the dropout RNG
        states (`rng_states`), plus the model's `checkpoint_items`.

        The items (e.g. `encoder`) sit at the root, so another run can restore them by name with
        `tf.train.Checkpoint(encoder=...).read(path)`.
        """
        if not hasattr(self, "_checkpoint"):
            self._checkpoint = tf.train.Checkpoint(train_batches=self._train_batches, **self._checkpoint_items())
        return self._checkpoint

    @property
    def weights_checkpoint(self) -> tf.train.Checkpoint:
        """`checkpoint` without the data position: what a divergence rollback restores (the data goes on)."""
        if not hasattr(self, "_weights_checkpoint"):
            self._weights_checkpoint = tf.train.Checkpoint(**self._checkpoint_items())
        return self._weights_checkpoint

    def _checkpoint_items(self) -> dict:
        items = dict(getattr(self._model, "checkpoint_items", None) or {})
        clashes = sorted(set(items) & set(_RESERVED_CHECKPOINT_NAMES))
        if clashes:
            raise ValueError(f"model.checkpoint_items uses reserved checkpoint names {clashes}")
        checkpoint_items = dict(model=self._model, optimizer=self._optimizer, global_step=self.global_step, **items)
        # Keras 3 keeps each Dropout's RNG in a SeedGenerator whose state variable the model does not
        # track for tf.train.Checkpoint: without it a resumed run draws other dropout masks than an
        # uninterrupted one. (Listed in model.variables, in a stable order, as ".../seed_generator_state".)
        rng_states = [v for v in self._model.variables if v.path.endswith("seed_generator_state")]
        if rng_states:
            checkpoint_items["rng_states"] = rng_states
        return checkpoint_items


    def create_train_loop_fn(self):
        """Creates the training loop `loop_fn(iterator, num_steps)` from train_step and the options."""
        if self._train_tf_while_loop:
            loop_fn = tf.function(_create_tf_while_loop_fn(self.train_step))
        else:
            step_fn = tf.function(self.train_step) if self._train_tf_function else self.train_step
            loop_fn = _create_loop_fn(step_fn)
        if self._is_async:
            def async_loop_fn(iterator, num_steps):
                self.coordinator_for_async().schedule(loop_fn, args=(iterator, num_steps))
            return async_loop_fn
        return loop_fn

    def train(self, num_steps):
        """Implements `num_steps` steps of training.

        Args:
          num_steps: the number of calls to train_step (an int or an int32 scalar tensor).

        Returns:
          The output of self.train_loop_end().
        """
        self.train_loop_begin()
        if self._train_dataset is None:
            raise RuntimeError("This Trainer was created with train=False")
        if self._train_loop_fn is None:
            self._train_loop_fn = self.create_train_loop_fn()
        if self._train_iter is None:
            self._train_iter = tf.nest.map_structure(iter, self._train_dataset)
        if self._train_tf_while_loop:
            num_steps = _steps_tensor(num_steps)
        self._train_loop_fn(self._train_iter, num_steps)
        return self.train_loop_end()

    def train_loop_begin(self):
        """Called once, eagerly, at the beginning of a training loop: resets the train metrics."""
        for metric in self._train_metrics + [self._train_loss]:
            metric.reset_state()

    def next_train_inputs(self, iterator):
        """Fetches the next inputs for the model during train (override to change what is fed)."""
        return next(iterator)

    def train_step(self, iterator):
        """One training step: next inputs, then `task.train_step` on every replica (XLA-compiled with
        TrainerConfig.jit_compile; the input pipeline stays outside the compiled step)."""

        def step_fn(inputs):
            logs = self._task.train_step(inputs, model=self._model, optimizer=self._optimizer,
                                         metrics=self._train_metrics)
            self._train_loss.update_state(logs[self._task.loss])

        if self._jit_compile and self._replica_train_step is None:
            self._replica_train_step = tf.function(step_fn, jit_compile=True)
        inputs = self.next_train_inputs(iterator)
        self._train_batches.assign_add(1)
        self._strategy.run(self._replica_train_step or step_fn, args=(inputs,))

    def train_loop_end(self) -> dict:
        """Returns `training_loss` (mean over the loop), `learning_rate` and every train metric.

        A NaN or Inf `training_loss` means some step of the loop diverged.
        """
        self.join()
        logs = {}
        for metric in self._train_metrics + [self._train_loss]:
            logs[metric.name] = metric.result()
        logs["learning_rate"] = optimization.current_learning_rate(self._optimizer)
        return logs

    def create_eval_loop_fn(self, has_state: bool):
        """Creates the evaluation loop `loop_fn(iterator, num_steps[, state, reduce_fn])`."""
        if self._eval_tf_while_loop:
            if has_state:
                loop_fn = tf.function(_create_tf_while_loop_fn_with_state(self.eval_step))
            else:
                loop_fn = tf.function(_create_tf_while_loop_fn(self.eval_step))
        else:
            step_fn = tf.function(self.eval_step) if self._eval_tf_function else self.eval_step
            loop_fn = _create_loop_fn(step_fn)
        if self._is_async:
            if has_state:
                raise ValueError("A stateful eval loop is not supported in async training.")
            def async_loop_fn(iterator, num_steps, state=None, reduce_fn=None):
                del state, reduce_fn
                self.coordinator_for_async().schedule(loop_fn, args=(iterator, num_steps))
            return async_loop_fn
        return loop_fn

    def evaluate(self, num_steps) -> dict:
        """Implements `num_steps` steps of evaluation.

        Args:
          num_steps: the number of evaluation steps; -1 runs until eval_step raises StopIteration or
            tf.errors.OutOfRangeError (the whole validation dataset).

        Returns:
          The output of self.eval_end().

        Raises:
          ValueError: the eval loop is a tf.while_loop (eval_tf_while_loop / use_tf_while_loop) and num_steps
            is -1 or None.
        """
        if num_steps is None:
            num_steps = -1
        if self._eval_tf_while_loop and _python_steps(num_steps) == -1:
            raise ValueError("Looping until the validation data is exhausted (num_steps=-1) is not supported "
                             "when config.trainer.eval_tf_while_loop (or use_tf_while_loop) is True or under a ParameterServerStrategy: "
                             "pass a number of steps (TrainerConfig.validation_steps)")
        if self._eval_dataset is None:
            raise RuntimeError("This Trainer was created with evaluate=False")
        state = self.eval_begin()
        has_state = state is not None
        if self._eval_loop_fn is None or self._eval_loop_has_state != has_state:
            self._eval_loop_fn = self.create_eval_loop_fn(has_state)
            self._eval_loop_has_state = has_state
        eval_iter = tf.nest.map_structure(iter, self._eval_dataset)  # a fresh pass each evaluation
        if self._eval_tf_while_loop and not has_state:
            self._eval_loop_fn(eval_iter, _steps_tensor(num_steps))
            state = None
        elif self._eval_tf_while_loop:
            state = self._eval_loop_fn(eval_iter, _steps_tensor(num_steps), state, self.eval_reduce)
        else:
            state = self._eval_loop_fn(eval_iter, num_steps, state=state, reduce_fn=self.eval_reduce)
        if self._is_async:
            self.join()
        return self.eval_end() if state is None else self.eval_end(state)

    def eval_begin(self):
        """Sets up metrics; returns the initial eval_reduce state (None)."""
        for metric in self._validation_metrics + [self._validation_loss]:
            metric.reset_state()
        return None

    def next_eval_inputs(self, iterator):
        """Fetches the next inputs for the model during eval.

        Returns:
          (inputs, logs): the inputs go to the model; `logs` (a dict, or None) stay on the host and are
          merged into the step outputs that `task.aggregate_logs` receives.
        """
        return next(iterator), None

    def eval_step(self, iterator):
        """One validation step: `task.validation_step` on every replica; returns the per-replica logs.

        The returned dict maps each log name to a tuple of per-replica values (the local results),
        merged with the host-side logs of next_eval_inputs.
        """

        def step_fn(inputs):
            logs = self._task.validation_step(inputs, model=self._model, metrics=self._validation_metrics)
            if self._task.loss in logs:  # each batch weighs as many examples as it holds
                self._validation_loss.update_state(logs[self._task.loss], sample_weight=_batch_examples(inputs))
            return logs

        inputs, passthrough_logs = self.next_eval_inputs(iterator)
        distributed_outputs = self._strategy.run(step_fn, args=(inputs,))
        logs = tf.nest.map_structure(self._strategy.experimental_local_results, distributed_outputs)
        if passthrough_logs:
            overlap = sorted(set(logs) & set(passthrough_logs))
            if overlap:
                logging.warning("next_eval_inputs logs %s overwrite the validation_step logs", overlap)
            logs = dict(logs, **passthrough_logs)
        return logs

    def eval_reduce(self, state=None, step_outputs=None):
        """Per-step reduction of the evaluation outputs: `task.aggregate_logs(state, step_outputs)`.

        Returns:
          The state passed to the next step; after the last step, it goes to eval_end.
        """
        return self._task.aggregate_logs(state, step_outputs)

    def eval_end(self, aggregated_logs=None) -> dict:
        """Processes evaluation results: validation_loss, metrics, the task's reduced logs, best export."""
        logs = {}
        for metric in self._validation_metrics:
            logs[metric.name] = metric.result()
        if float(self._validation_loss.count.numpy()) != 0:
            logs[self._validation_loss.name] = self._validation_loss.result()
        else:
            logging.info("Skipping validation_loss: the task's validation_step returned no '%s'", self._task.loss)
        if aggregated_logs is not None:
            logs.update(self._task.reduce_aggregated_logs(aggregated_logs, global_step=self.global_step) or {})
        if self._checkpoint_exporter is not None:
            self._checkpoint_exporter.maybe_export_checkpoint(self.checkpoint, logs, int(self.global_step.numpy()))
            metric_name = getattr(self._checkpoint_exporter, "metric_name", None)
            best_logs = getattr(self._checkpoint_exporter, "best_ckpt_logs", None)
            if metric_name and best_logs and metric_name in best_logs:
                logs["best_" + metric_name] = best_logs[metric_name]
        return logs

    def initialize(self):
        """The CheckpointManager's init_fn: called when model_dir holds no checkpoint.

        Calls `task.initialize(model)`, which may load a pretrained checkpoint saved elsewhere.
        """
        self._task.initialize(self._model)
