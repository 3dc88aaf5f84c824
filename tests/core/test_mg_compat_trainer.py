"""The Task and Trainer behave as Model Garden documents them (issue items 1-3 and 10), on a tiny Keras model.

A Model Garden task's dataset yields `(features, labels)` tuples, its `aggregate_logs` names its second
argument `step_outputs`, its base `build_losses` returns the model's auxiliary losses, and a model compiled
with a loss adds that loss: each test below is such a task or model, written the way Model Garden's users
write them.
"""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from research.core import base_task, base_trainer, config_definitions, optimization, train_lib


class AuxLossModel(keras.Model):
    """Dense(1) on float32 [batch, 2]; adds mean(output) as an auxiliary loss (as Model Garden's MockModel)."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1, bias_initializer="ones")

    def call(self, inputs, training=None):
        outputs = self.dense(inputs)
        self.add_loss(tf.reduce_mean(outputs))
        return outputs


class TupleTask(base_task.Task):
    """A task written as Model Garden's: (features, labels) tuples, base build_losses, `step_outputs`."""

    def build_model(self):
        model = AuxLossModel()
        model(tf.zeros([1, 2]))
        return model

    def build_inputs(self, params, input_context=None):
        features = tf.constant([[1.0, 2.0], [3.0, 4.0]])
        labels = tf.constant([[1], [0]])
        return tf.data.Dataset.from_tensors((features, labels)).repeat()

    def build_metrics(self, training=True):
        return [keras.metrics.Accuracy(name="acc")]

    def validation_step(self, inputs, model, metrics=None):
        logs = super().validation_step(inputs, model, metrics)
        logs["counter"] = tf.constant(1.0)
        return logs

    def aggregate_logs(self, state, step_outputs):  # Model Garden's tasks name it step_outputs
        state = state if state is not None else {"counter": 0.0}
        state["counter"] += float(np.sum([v.numpy() for v in step_outputs["counter"]]))
        return state

    def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
        return dict(aggregated_logs)


def sgd_config(**trainer):
    return config_definitions.ExperimentConfig(trainer=config_definitions.TrainerConfig(
        optimizer_config=optimization.OptimizerConfig(type="sgd", learning_rate=0.1, decay="constant", momentum=0.0,
                                                      weight_decay_rate=0.0, global_clipnorm=None), **trainer))


def make_trainer(config=None, task=None, model=None):
    config = config or sgd_config()
    task = task or TupleTask(config.task)
    return base_trainer.Trainer(config, task, model=model or task.build_model(),
                                optimizer=task.create_optimizer(config.trainer.optimizer_config, config.runtime))


def test_train_step_splits_tuples_and_build_losses_sums_the_aux_losses():
    task = TupleTask(config_definitions.TaskConfig())
    model = task.build_model()
    features, labels = next(iter(task.build_inputs(None)))
    expected = float(tf.reduce_mean(model(features)))  # the base build_losses: the auxiliary losses' sum
    logs = task.validation_step((features, labels), model)
    np.testing.assert_allclose(float(logs["loss"]), expected, rtol=1e-6)
    assert float(task.build_losses(labels, None)) == 0.0  # no auxiliary losses: 0
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    before = model.dense.bias.numpy().copy()
    task.train_step((features, labels), model, optimizer)
    assert not np.allclose(model.dense.bias.numpy(), before)  # the aux loss was minimized


def test_trainer_trains_and_evaluates_a_tuple_task_with_positional_aggregate_logs():
    trainer = make_trainer()
    logs = trainer.train(tf.constant(3))
    assert {"training_loss", "learning_rate", "acc"} <= set(logs)
    logs = trainer.evaluate(tf.constant(4))
    assert logs["counter"] == 4.0 and "validation_loss" in logs


def test_model_compiled_with_a_loss_adds_it():
    task = TupleTask(config_definitions.TaskConfig())
    model = task.build_model()
    model.compile(loss=keras.losses.MeanSquaredError())
    features, labels = next(iter(task.build_inputs(None)))
    outputs = model(features)
    mse = float(tf.reduce_mean(tf.square(tf.cast(labels, tf.float32) - outputs)))
    logs = task.validation_step((features, labels), model)
    # compute_loss includes the model's auxiliary losses; build_losses(aux_losses=None) adds 0.
    np.testing.assert_allclose(float(logs["loss"]), mse + float(tf.reduce_mean(outputs)), rtol=1e-5)
    logs = make_trainer(task=task, model=model).train(tf.constant(2))
    assert np.isfinite(float(logs["training_loss"]))


def test_model_compiled_with_metrics_reports_them():
    task = TupleTask(config_definitions.TaskConfig())
    model = task.build_model()
    model.compile(loss="mse", metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    features, labels = next(iter(task.build_inputs(None)))
    logs = task.validation_step((features, labels), model)
    expected = float(tf.reduce_mean(tf.abs(tf.cast(labels, tf.float32) - model(features))))
    np.testing.assert_allclose(float(logs["mae"]), expected, rtol=1e-5)


def test_separate_train_and_eval_loop_switches():
    trainer = make_trainer(sgd_config(train_tf_while_loop=True, eval_tf_while_loop=False))
    assert trainer.train(tf.constant(3))["training_loss"] is not None
    assert int(trainer.global_step.numpy()) == 3
    assert trainer.evaluate(tf.constant(2))["counter"] == 2.0  # a Python eval loop beside a tf.while_loop train loop
    with pytest.raises(ValueError, match="eval_tf_while_loop"):
        make_trainer(sgd_config(eval_tf_while_loop=True)).evaluate(-1)
    with pytest.raises(ValueError, match="train_tf_while_loop"):
        sgd_config(train_tf_while_loop=True, train_tf_function=False)
    with pytest.raises(ValueError, match="TrainerConfig.eval_tf_function"):
        sgd_config(eval_tf_function="yes")


def test_generic_task_config_is_a_mutable_base_for_ported_configs():
    @dataclasses.dataclass
    class MyTaskConfig(config_definitions.TaskConfig):
        num_classes: int = 2

    config = config_definitions.ExperimentConfig(task=MyTaskConfig())
    config.task.train_data = None  # Model Garden's configs are mutable; so is this base
    assert config.task.validation_data.input_path == "" and config.task.num_classes == 2
    assert isinstance(config_definitions.ExperimentConfig().task, config_definitions.TaskConfig)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("loss_scale", ["dynamic", 128])
def test_loss_scale_is_ignored_unless_float16(dtype, loss_scale):
    runtime = optimization.RuntimeConfig(mixed_precision_dtype=dtype, loss_scale=loss_scale)
    optimizer = optimization.create_optimizer(optimization.OptimizerConfig(type="sgd"), runtime)
    assert not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert optimizer.loss_scale_factor is None


def test_best_checkpoint_exporter_from_train_lib(tmp_path):
    config = sgd_config(best_checkpoint_export_subdir="best_ckpt", best_checkpoint_eval_metric="acc")
    exporter = train_lib.maybe_create_best_ckpt_exporter(config, str(tmp_path))
    task = TupleTask(config.task)
    trainer = base_trainer.Trainer(config, task, model=task.build_model(),
                                   optimizer=task.create_optimizer(config.trainer.optimizer_config),
                                   checkpoint_exporter=exporter)
    trainer.train(tf.constant(1))
    trainer.evaluate(tf.constant(1))
    assert (tmp_path / "best_ckpt" / "info.json").exists()


def test_base_initialize_restores_checkpoint_items_and_skips_an_empty_directory(tmp_path):
    task = TupleTask(config_definitions.TaskConfig(init_checkpoint=str(tmp_path / "empty")))
    (tmp_path / "empty").mkdir()
    model = task.build_model()
    task.initialize(model)  # a directory holding no checkpoint: logged, nothing restored (Model Garden's)
    source = task.build_model()
    source.dense.kernel.assign(tf.fill([2, 1], 7.0))
    tf.train.Checkpoint(model=source).save(str(tmp_path / "ckpts" / "ckpt"))
    TupleTask(config_definitions.TaskConfig(init_checkpoint=str(tmp_path / "ckpts"))).initialize(model)
    np.testing.assert_array_equal(model.dense.kernel.numpy(), np.full([2, 1], 7.0))
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        TupleTask(config_definitions.TaskConfig(init_checkpoint=str(tmp_path / "nothing-here"))).initialize(model)
