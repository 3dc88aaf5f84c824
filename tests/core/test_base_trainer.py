"""Trainer tests in the spirit of Model Garden's base_trainer_test, on the toy 2-class task."""
import dataclasses
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from research.core import base_trainer, export, optimization
from toy_task import ToyDataConfig, ToyTask, ToyTaskConfig, experiment_config

# 84 validation examples in batches of 8: 11 batches, the last one partial.
_VALIDATION = ToyDataConfig(num_examples=84, is_training=False, seed=1)



def make_trainer(trainer_cls=base_trainer.Trainer, runtime=None, task_config=None, **config_kwargs):
    config = experiment_config(task=task_config or ToyTaskConfig(validation_data=_VALIDATION), runtime=runtime,
                               **config_kwargs)
    task = ToyTask(config.task)
    model = task.build_model()
    optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
    return trainer_cls(config, task, model, optimizer)


def test_train_returns_loss_learning_rate_and_metrics():
    trainer = make_trainer()
    logs = trainer.train(tf.constant(3, tf.int32))
    assert {"training_loss", "learning_rate", "accuracy"} <= set(logs)
    assert math.isfinite(float(logs["training_loss"]))
    assert logs["learning_rate"] == pytest.approx(0.1)
    assert int(trainer.global_step.numpy()) == 3
    assert trainer.global_step is trainer.optimizer.iterations
    trainer.train(2)  # a Python int works too, and the iterator continues
    assert int(trainer.global_step.numpy()) == 5


def test_train_loop_begin_resets_metrics():
    trainer = make_trainer()
    trainer.train(2)
    trainer.train_loop_begin()
    assert float(trainer.train_loss.count.numpy()) == 0


def test_train_without_tf_function():
    trainer = make_trainer(use_tf_function=False)
    logs = trainer.train(2)
    assert math.isfinite(float(logs["training_loss"]))
    assert int(trainer.global_step.numpy()) == 2


def test_training_loss_nan_is_visible_in_logs():
    task_config = ToyTaskConfig(train_data=ToyDataConfig(nan_from_batch=1), validation_data=_VALIDATION)
    trainer = make_trainer(task_config=task_config)
    assert math.isfinite(float(trainer.train(1)["training_loss"]))
    assert math.isnan(float(trainer.train(2)["training_loss"]))


class CountingTrainer(base_trainer.Trainer):
    """Adds a host-side log to every eval step, counted by ToyTask.aggregate_logs."""

    def next_eval_inputs(self, iterator):
        inputs, _ = super().next_eval_inputs(iterator)
        return inputs, {"host_marker": tf.constant(1)}


def test_evaluate_runs_exactly_num_steps_and_merges_host_logs():
    trainer = make_trainer(CountingTrainer)
    logs = trainer.evaluate(tf.constant(5))
    assert logs["num_eval_steps"] == 5
    assert logs["num_host_logs"] == 5
    assert {"accuracy", "validation_loss"} <= set(logs)


def test_evaluate_minus_one_consumes_the_whole_dataset_each_time():
    trainer = make_trainer(CountingTrainer)
    assert trainer.evaluate(-1)["num_eval_steps"] == 11
    assert trainer.evaluate(-1)["num_eval_steps"] == 11  # a fresh pass over the data each evaluation


def test_tf_while_loop_trains_and_refuses_unbounded_eval():
    trainer = make_trainer(use_tf_while_loop=True)
    logs = trainer.train(4)
    assert int(trainer.global_step.numpy()) == 4
    assert math.isfinite(float(logs["training_loss"]))
    with pytest.raises(ValueError, match="use_tf_while_loop"):
        trainer.evaluate(-1)
    with pytest.raises(ValueError, match="use_tf_while_loop"):
        trainer.evaluate(None)
    logs = trainer.evaluate(3)
    assert "validation_loss" in logs and "num_eval_steps" not in logs  # no per-step state in the while loop


def test_eval_reduce_calls_task_aggregate_logs():
    trainer = make_trainer()
    state = trainer.eval_reduce(None, {"loss": 1.0})
    state = trainer.eval_reduce(state, {"loss": 2.0})
    assert state["steps"] == 2
    assert trainer.eval_end(state)["num_eval_steps"] == 2


def test_checkpoint_holds_model_optimizer_step_and_checkpoint_items(tmp_path):
    trainer = make_trainer()
    trainer.train(2)
    path = trainer.checkpoint.save(str(tmp_path / "ckpt"))
    names = [name for name, _ in tf.train.list_variables(path)]
    assert any(name.startswith("encoder/") for name in names)
    assert "global_step/.ATTRIBUTES/VARIABLE_VALUE" in names
    # A pretrained encoder loads by name into another model.
    other = ToyTask(trainer.config.task).build_model()
    tf.train.Checkpoint(encoder=other.checkpoint_items["encoder"]).read(path).assert_existing_objects_matched()
    np.testing.assert_allclose(other.encoder.kernel.numpy(), trainer.model.encoder.kernel.numpy())


def test_initialize_calls_task_initialize():
    trainer = make_trainer()
    seen = []
    trainer.task.initialize = seen.append
    trainer.initialize()
    assert seen == [trainer.model]


def test_distribute_dataset_from_function_and_dataset():
    trainer = make_trainer()
    data = ToyDataConfig(global_batch_size=4, num_examples=8, is_training=False)
    with_context = trainer.distribute_dataset(trainer.task.build_inputs, data)
    without_context = trainer.distribute_dataset(lambda params: ToyTask(None).build_inputs(params), data)
    plain = trainer.distribute_dataset(tf.data.Dataset.range(6).batch(3))
    for distributed in (with_context, without_context):
        batch = next(iter(distributed))
        assert batch["x"].shape == (4, 4)
    assert [b.numpy().tolist() for b in plain] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="callable"):
        trainer.distribute_dataset(3)


def test_async_trio_without_parameter_server():
    trainer = make_trainer()
    trainer.join()  # no coordinator: a no-op
    with pytest.raises(RuntimeError, match="ParameterServerStrategy"):
        trainer.coordinator_for_async()


def test_explicit_datasets_and_train_or_evaluate_only():
    config = experiment_config(task=ToyTaskConfig(validation_data=_VALIDATION))
    task = ToyTask(config.task)
    train_only = base_trainer.Trainer(config, task, task.build_model(),
                                      task.create_optimizer(config.trainer.optimizer_config), evaluate=False)
    assert train_only.eval_dataset is None and train_only.validation_metrics == []
    with pytest.raises(RuntimeError, match="evaluate=False"):
        train_only.evaluate(1)
    dataset = task.build_inputs(ToyDataConfig(num_examples=16, is_training=False))
    eval_only = base_trainer.Trainer(config, task, task.build_model(),
                                     task.create_optimizer(config.trainer.optimizer_config), train=False,
                                     validation_dataset=dataset)
    assert eval_only.evaluate(-1)["num_eval_steps"] == 2
    with pytest.raises(RuntimeError, match="train=False"):
        eval_only.train(1)
    no_data = dataclasses.replace(config, task=object())
    with pytest.raises(AttributeError, match="train_data"):
        base_trainer.Trainer(no_data, task, task.build_model(), task.create_optimizer(config.trainer.optimizer_config))


def test_eval_end_feeds_the_checkpoint_exporter(tmp_path):
    config = experiment_config(task=ToyTaskConfig(validation_data=_VALIDATION))
    task = ToyTask(config.task)
    exporter = export.BestCheckpointExporter(str(tmp_path / "best"), "accuracy", "higher")
    trainer = base_trainer.Trainer(config, task, task.build_model(),
                                   task.create_optimizer(config.trainer.optimizer_config),
                                   checkpoint_exporter=exporter)
    trainer.train(2)
    logs = trainer.evaluate(-1)
    assert logs["best_accuracy"] == pytest.approx(float(logs["accuracy"]))
    with open(tmp_path / "best" / "info.json") as info:
        assert json.load(info)["best_ckpt_global_step"] == 2
    assert tf.train.latest_checkpoint(str(tmp_path / "best")).endswith("best_ckpt-2")


def test_float16_policy_uses_a_dynamic_loss_scale():
    runtime = optimization.RuntimeConfig(mixed_precision_dtype="float16")
    optimization.set_precision_policy(runtime)
    try:
        trainer = make_trainer(runtime=runtime)
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        assert trainer.model.head.compute_dtype == "float16"
        initial_scale = float(trainer.optimizer.dynamic_scale.numpy())
        logs = trainer.train(4)
        assert math.isfinite(float(logs["training_loss"]))
        assert logs["learning_rate"] == pytest.approx(0.1)
        scale = float(trainer.optimizer.dynamic_scale.numpy())
        assert 0 < scale <= initial_scale and math.isfinite(scale)
        # Steps skipped for overflowing gradients do not count: the global step advanced at most 4.
        assert 0 < int(trainer.global_step.numpy()) <= 4
        assert trainer.model.head.kernel.dtype == "float32"  # float32 master weights
    finally:
        keras.mixed_precision.set_global_policy("float32")
