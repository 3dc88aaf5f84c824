"""The Task interface: what a training job needs to know about one problem.

A task builds its model, inputs, losses and metrics, and says how one training or validation step
runs. The Trainer drives any task through this interface, so a Model Garden task ports by changing
its imports: the method names, arguments and return values are Model Garden's.
"""
import abc

import keras
import tensorflow as tf

from research.core import checkpoint_restore, optimization


class Task(tf.Module, metaclass=abc.ABCMeta):
    """A training problem: model, data, loss, metrics and the step functions.

    Args:
      params: the task configuration, a dataclass.
      logging_dir: where the model, summaries etc. are saved; the task may write there too.
      name: the task name.
    """

    loss = "loss"  # the key of the total loss in the logs of train_step and validation_step

    def __init__(self, params, logging_dir: str | None = None, name: str | None = None):
        super().__init__(name=name)
        self._task_config = params
        self._logging_dir = logging_dir or ""

    @property
    def task_config(self):
        return self._task_config

    @property
    def logging_dir(self) -> str:
        return self._logging_dir

    @classmethod
    def create_optimizer(cls, optimizer_config, runtime_config=None, dp_config=None):
        """Creates an optimizer from its configuration (see research/core/optimization.py).

        Args:
          optimizer_config: the parameters of the optimization settings.
          runtime_config: the parameters of the runtime (precision decides loss scaling).
          dp_config: the parameters of differential privacy, or None.

        Returns:
          A keras.optimizers.Optimizer.
        """
        return optimization.create_optimizer(optimizer_config, runtime_config, dp_config)

    def initialize(self, model: keras.Model):
        """[Optional] Called by the checkpoint manager when model_dir holds no checkpoint.

        As Model Garden's: restores every item of `model.checkpoint_items` (or the whole model, when it has
        none) from `task_config.init_checkpoint` (a checkpoint prefix, or a directory whose latest
        checkpoint is used), so that a model saved elsewhere initializes this one. An empty
        init_checkpoint, or a directory holding no checkpoint, is logged and skipped.
        """
        init_checkpoint = getattr(self._task_config, "init_checkpoint", None)
        if not init_checkpoint:
            return
        items = dict(getattr(model, "checkpoint_items", None) or {"model": model})
        checkpoint_restore.restore_items(items, init_checkpoint)

    @abc.abstractmethod
    def build_model(self) -> keras.Model:
        """[Optional] Creates model architecture.

        Returns:
          A model instance.
        """

    @abc.abstractmethod
    def build_inputs(self, params, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Returns a dataset, or a nested structure of dataset objects."""

    def build_losses(self, labels, model_outputs, aux_losses=None) -> tf.Tensor:
        """Standard interface to compute losses.

        Args:
          labels: optional label tensors.
          model_outputs: a nested structure of output tensors.
          aux_losses: auxiliary loss tensors, i.e. losses in keras.Model.

        Returns:
          The total loss tensor: by default (Model Garden's) the sum of the auxiliary losses, 0.0 without any.
        """
        del labels, model_outputs
        if not aux_losses:
            return tf.constant(0.0)
        return tf.add_n([tf.cast(loss, tf.float32) for loss in aux_losses])

    def build_metrics(self, training: bool = True) -> list:
        """Gets streaming metrics for training/validation."""
        del training
        return []

    def process_metrics(self, metrics, labels, model_outputs, **kwargs):
        """Process and update metrics. Called when using custom training loop API.

        Args:
          metrics: a nested structure of metrics objects; the return of self.build_metrics.
          labels: a tensor or a nested structure of tensors.
          model_outputs: a tensor or a nested structure of tensors, e.g. output of the model built by
            self.build_model.
          **kwargs: other args.
        """
        for metric in metrics:
            metric.update_state(labels, model_outputs)

    def process_compiled_metrics(self, compiled_metrics, labels, model_outputs):
        """Process and update compiled_metrics. Call when using the compile/fit API.

        Args:
          compiled_metrics: the compiled metrics (model.compiled_metrics).
          labels: a tensor or a nested structure of tensors.
          model_outputs: a tensor or a nested structure of tensors.
        """
        compiled_metrics.update_state(labels, model_outputs)

    def train_step(self, inputs, model: keras.Model, optimizer, metrics=None) -> dict:
        """Does forward and backward.

        With distribution strategies, this runs on every replica: the loss is divided by the number of
        replicas so that the summed gradients average over the global batch; under a float16 policy
        the loss is scaled and the gradients unscaled by the LossScaleOptimizer. As in Model Garden, a
        model compiled with a loss (`model.compile(loss=...)`) adds its compiled loss (which includes
        `model.losses`) to `build_losses(..., aux_losses=None)`, and a model compiled with metrics has
        them updated through `process_compiled_metrics` and reported in the logs.

        Args:
          inputs: a batch: a `(features, labels)` tuple, or a dictionary holding both (see `split_inputs`).
          model: the model, forward pass definition.
          optimizer: the optimizer for this training step.
          metrics: a nested structure of metrics objects.

        Returns:
          A dictionary of logs.
        """
        features, labels = self.split_inputs(inputs)
        with tf.GradientTape() as tape:
            outputs = model(features, training=True)
            loss = self._loss(model, labels, outputs)
            scaled_loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = optimizer.scale_loss(scaled_loss)  # loss scaling (float16); identity otherwise
        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(list(zip(gradients, variables)))
        return self._logs(model, loss, labels, outputs, metrics)

    def validation_step(self, inputs, model: keras.Model, metrics=None) -> dict:
        """Validation step.

        Args:
          inputs: a batch: a `(features, labels)` tuple, or a dictionary holding both.
          model: the keras.Model.
          metrics: a nested structure of metrics objects.

        Returns:
          A dictionary of logs.
        """
        features, labels = self.split_inputs(inputs)
        outputs = self.inference_step(features, model)
        loss = self._loss(model, labels, outputs)
        return self._logs(model, loss, labels, outputs, metrics)

    def _loss(self, model, labels, outputs):
        compiled_loss = _compiled_loss(model)
        if compiled_loss is None:
            return self.build_losses(labels=labels, model_outputs=outputs, aux_losses=model.losses)
        return compiled_loss(labels, outputs) + self.build_losses(labels=labels, model_outputs=outputs, aux_losses=None)

    def _logs(self, model, loss, labels, outputs, metrics) -> dict:
        logs = {self.loss: loss}
        if metrics:
            self.process_metrics(metrics, labels, outputs)
        compiled_metrics = _compiled_metrics(model)
        if compiled_metrics is not None:
            self.process_compiled_metrics(compiled_metrics, labels, outputs)
            logs.update({metric.name: metric.result() for metric in metrics or []})
            logs.update(compiled_metrics.result())
        return logs

    def inference_step(self, inputs, model: keras.Model):
        """Performs the forward step. With distribution strategies, this runs on devices.

        Args:
          inputs: a dictionary of input tensors.
          model: the keras.Model.

        Returns:
          Model outputs.
        """
        return model(inputs, training=False)

    def split_inputs(self, inputs):
        """Splits a batch into (features, labels): a 2-tuple is (features, labels), as in Model Garden;
        anything else (a dictionary) is both."""
        if isinstance(inputs, tuple) and len(inputs) == 2:
            return inputs
        return inputs, inputs

    def aggregate_logs(self, state=None, step_outputs=None):
        """Optional aggregation over logs returned from a validation step (runs on the host).

        The Trainer passes both arguments positionally, as Model Garden's does, so overrides may name the
        second one `step_outputs` (Model Garden's tasks) or `step_logs` (its documentation).

        Args:
          state: the current state of training, for example a sequence of metrics.
          step_outputs: logs from a validation step; can be a dictionary.
        """

    def reduce_aggregated_logs(self, aggregated_logs, global_step=None) -> dict:
        """Optional reduce of aggregated logs over validation steps, at the end of validation.

        Args:
          aggregated_logs: aggregated logs over multiple validation steps.
          global_step: an optional variable of global step.

        Returns:
          A dictionary of reduced results.
        """
        del aggregated_logs, global_step
        return {}


def _compiled_loss(model):
    """`model.compute_loss` when the model was compiled with a loss (Keras 3's form of `compiled_loss`), else None."""
    if getattr(model, "_compile_loss", None) is None:
        return None
    return lambda labels, outputs: model.compute_loss(y=labels, y_pred=outputs)


def _compiled_metrics(model):
    """The metrics the model was compiled with (update_state(y, y_pred) and result() -> dict), or None."""
    return getattr(model, "_compile_metrics", None)


class CompiledMetrics:
    """The metrics given to `compile_model`, updated together like Keras' compiled metrics."""

    def __init__(self, metrics):
        self.metrics = list(metrics)

    def update_state(self, y_true, y_pred, sample_weight=None):
        for metric in self.metrics:
            metric.update_state(y_true, y_pred, sample_weight=sample_weight)


def compile_model(model: keras.Model, task: Task, optimizer, metrics=()) -> keras.Model:
    """Makes `model.fit` / `model.evaluate` run the task: its losses, and its `process_compiled_metrics`.

    Args:
      model: the task's model.
      task: the task.
      optimizer: the optimizer of `fit`.
      metrics: Keras metrics fed through `task.process_compiled_metrics` (e.g. for the masked-LM
        task, `keras.metrics.Accuracy(name='masked_lm_accuracy')` receives the masked ids, the
        predicted ids and the masked-LM weights).

    Returns:
      The compiled model.
    """
    model.compile(optimizer=optimizer)
    compiled = CompiledMetrics(metrics)
    loss_mean = keras.metrics.Mean(name=task.loss)  # the epoch's mean loss, as Keras reports its own
    keras_reset_metrics = model.reset_metrics

    def reset_metrics():  # fit and evaluate reset metrics at every epoch through this method
        keras_reset_metrics()
        for metric in [loss_mean, *compiled.metrics]:
            metric.reset_state()

    def logs(loss):
        loss_mean.update_state(loss)
        return {task.loss: loss_mean.result(), **{metric.name: metric.result() for metric in compiled.metrics}}

    def train_step(data):
        features, labels = task.split_inputs(data)
        with tf.GradientTape() as tape:
            outputs = model(features, training=True)
            loss = task.build_losses(labels=labels, model_outputs=outputs, aux_losses=model.losses)
        variables = model.trainable_variables
        model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        task.process_compiled_metrics(compiled, labels, outputs)
        return logs(loss)

    def test_step(data):
        features, labels = task.split_inputs(data)
        outputs = model(features, training=False)
        loss = task.build_losses(labels=labels, model_outputs=outputs, aux_losses=model.losses)
        task.process_compiled_metrics(compiled, labels, outputs)
        return logs(loss)

    model.train_step = train_step
    model.test_step = test_step
    model.reset_metrics = reset_metrics
    return model
