"""The Task interface: what a training job needs to know about one problem.

A task builds its model, inputs, losses and metrics, and says how one training or validation step
runs. The Trainer drives any task through this interface, so a Model Garden task ports by changing
its imports: the method names, arguments and return values are Model Garden's.
"""
import abc

import keras
import tensorflow as tf
from absl import logging

from research.core import optimization


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

        Loads a pretrained checkpoint saved elsewhere (`task_config.init_checkpoint`) when the task has one.
        """
        init_checkpoint = getattr(self._task_config, "init_checkpoint", None)
        if init_checkpoint:
            logging.info("Task %s has an init_checkpoint but does not restore it: %s", self.name, init_checkpoint)

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
          The total loss tensor.
        """
        del labels, model_outputs
        raise NotImplementedError(f"{type(self).__name__} must implement build_losses")

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
        the loss is scaled and the gradients unscaled by the LossScaleOptimizer.

        Args:
          inputs: a dictionary of input tensors (features and labels).
          model: the model, forward pass definition.
          optimizer: the optimizer for this training step.
          metrics: a nested structure of metrics objects.

        Returns:
          A dictionary of logs.
        """
        features, labels = self.split_inputs(inputs)
        with tf.GradientTape() as tape:
            outputs = model(features, training=True)
            loss = self.build_losses(labels=labels, model_outputs=outputs, aux_losses=model.losses)
            scaled_loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = optimizer.scale_loss(scaled_loss)  # loss scaling (float16); identity otherwise
        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(list(zip(gradients, variables)))
        logs = {self.loss: loss}
        if metrics:
            self.process_metrics(metrics, labels, outputs)
        return logs

    def validation_step(self, inputs, model: keras.Model, metrics=None) -> dict:
        """Validation step.

        Args:
          inputs: a dictionary of input tensors.
          model: the keras.Model.
          metrics: a nested structure of metrics objects.

        Returns:
          A dictionary of logs.
        """
        features, labels = self.split_inputs(inputs)
        outputs = self.inference_step(features, model)
        loss = self.build_losses(labels=labels, model_outputs=outputs, aux_losses=model.losses)
        logs = {self.loss: loss}
        if metrics:
            self.process_metrics(metrics, labels, outputs)
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
        """Splits a batch into (features, labels); by default both are the whole batch."""
        return inputs, inputs

    def aggregate_logs(self, state=None, step_logs=None):
        """Optional aggregation over logs returned from a validation step (runs on the host).

        Args:
          state: the current state of training, for example a sequence of metrics.
          step_logs: logs from a validation step; can be a dictionary.
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
