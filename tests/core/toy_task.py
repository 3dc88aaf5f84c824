"""A tiny 2-class Task on synthetic data, for the Trainer and run-loop tests.

Features: `x` float32 [batch, 4] ~ N(0, 1); `label` int32 [batch] = 1 where x . w > 0 for a fixed w.
"""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from research.core import base_task, config_definitions, optimization

NUM_FEATURES = 4
_W = np.array([1.0, -2.0, 0.5, 1.5], np.float32)


@dataclasses.dataclass(frozen=True)
class ToyDataConfig:
    """global_batch_size: examples per step; num_examples: dataset size (training data repeats).

    nan_from_batch: batches from this index on (the step, in a fresh training run) have NaN features.
    """
    global_batch_size: int = 8
    num_examples: int = 64
    is_training: bool = True
    seed: int = 0
    nan_from_batch: int | None = None


@dataclasses.dataclass(frozen=True)
class ToyTaskConfig:
    train_data: ToyDataConfig = dataclasses.field(default_factory=ToyDataConfig)
    validation_data: ToyDataConfig = dataclasses.field(
        default_factory=lambda: ToyDataConfig(num_examples=40, is_training=False, seed=1))
    init_checkpoint: str = ""


class ToyModel(keras.Model):
    """Dense(8, tanh) -> Dense(2): float [batch, 4] -> logits [batch, 2] (tanh lets NaN through; relu would not)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Dense(8, activation="tanh", name="encoder")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, inputs, training=None):
        return self.head(self.encoder(inputs))

    @property
    def checkpoint_items(self):
        return {"encoder": self.encoder}


class ToyTask(base_task.Task):
    """Softmax cross-entropy on ToyModel; eval counts its steps through aggregate_logs."""

    def build_model(self) -> keras.Model:
        model = ToyModel(name="toy_model")
        model(tf.zeros([1, NUM_FEATURES]))  # create the variables
        return model

    def build_inputs(self, params: ToyDataConfig, input_context: tf.distribute.InputContext | None = None):
        rng = np.random.RandomState(params.seed)
        x = rng.normal(size=(params.num_examples, NUM_FEATURES)).astype(np.float32)
        label = (x @ _W > 0).astype(np.int32)
        dataset = tf.data.Dataset.from_tensor_slices({"x": x, "label": label})
        batch_size = params.global_batch_size
        if input_context is not None:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
            batch_size = input_context.get_per_replica_batch_size(batch_size)
        if params.is_training:
            dataset = dataset.repeat()
        dataset = dataset.batch(batch_size, drop_remainder=params.is_training)
        if params.nan_from_batch is not None:
            first_bad = params.nan_from_batch

            def poison(index, batch):
                bad = index >= first_bad
                return dict(batch, x=tf.where(bad, tf.fill(tf.shape(batch["x"]), np.nan), batch["x"]))

            dataset = dataset.enumerate().map(poison)
        return dataset

    def split_inputs(self, inputs):
        return inputs["x"], inputs["label"]

    def build_losses(self, labels, model_outputs, aux_losses=None):
        logits = tf.cast(model_outputs, tf.float32)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        if aux_losses:
            loss += tf.add_n([tf.cast(a, tf.float32) for a in aux_losses])
        return loss

    def build_metrics(self, training: bool = True):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def process_metrics(self, metrics, labels, model_outputs, **kwargs):
        for metric in metrics:
            metric.update_state(labels, tf.cast(model_outputs, tf.float32))

    def aggregate_logs(self, state=None, step_logs=None):
        state = state or {"steps": 0, "host_logs": 0}
        state["steps"] += 1
        if step_logs and "host_marker" in step_logs:
            state["host_logs"] += 1
        return state

    def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
        return {"num_eval_steps": float(aggregated_logs["steps"]),
                "num_host_logs": float(aggregated_logs["host_logs"])}


def experiment_config(*, train_steps=6, steps_per_loop=2, checkpoint_interval=2, validation_interval=4,
                      validation_steps=-1, task=None, runtime=None, learning_rate=0.1, **trainer_kwargs):
    """An ExperimentConfig for ToyTask with a constant-rate SGD optimizer."""
    optimizer_config = optimization.OptimizerConfig(type="sgd", learning_rate=learning_rate, decay="constant",
                                                    weight_decay_rate=0.0, global_clipnorm=None)
    trainer = config_definitions.TrainerConfig(
        optimizer_config=optimizer_config, train_steps=train_steps, steps_per_loop=steps_per_loop,
        checkpoint_interval=checkpoint_interval, summary_interval=steps_per_loop,
        validation_interval=validation_interval, validation_steps=validation_steps, **trainer_kwargs)
    return config_definitions.ExperimentConfig(task=task or ToyTaskConfig(), trainer=trainer,
                                               runtime=runtime or optimization.RuntimeConfig())
