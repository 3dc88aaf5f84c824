"""BestCheckpointExporter: exports on improvement, remembers the best across restarts, clear errors."""
import dataclasses
import json

import pytest
import tensorflow as tf

from research.core import export
from toy_task import experiment_config


def _checkpoint(value=1.0):
    return tf.train.Checkpoint(v=tf.Variable(value))


def test_exports_only_on_improvement(tmp_path):
    export_dir = str(tmp_path / "best")
    exporter = export.BestCheckpointExporter(export_dir, "accuracy", "higher")
    checkpoint = _checkpoint()
    assert exporter.maybe_export_checkpoint(checkpoint, {"accuracy": tf.constant(0.5), "loss": 1.0}, 10)
    assert not exporter.maybe_export_checkpoint(checkpoint, {"accuracy": 0.4}, 20)
    assert exporter.maybe_export_checkpoint(checkpoint, {"accuracy": 0.7}, 30)
    assert exporter.best_ckpt_path.endswith("best_ckpt-30")
    assert exporter.best_ckpt_logs["accuracy"] == pytest.approx(0.7)
    with open(exporter.best_ckpt_logs_path) as info:
        logs = json.load(info)
    assert logs["best_ckpt_global_step"] == 30 and logs["accuracy"] == pytest.approx(0.7)
    assert len(tf.io.gfile.glob(export_dir + "/best_ckpt-*.index")) == 1


def test_best_value_survives_a_restart(tmp_path):
    export_dir = str(tmp_path / "best")
    first = export.BestCheckpointExporter(export_dir, "loss", "lower")
    assert first.maybe_export_checkpoint(_checkpoint(), {"loss": 0.3}, 5)
    restarted = export.BestCheckpointExporter(export_dir, "loss", "lower")
    assert restarted.best_ckpt_logs["loss"] == pytest.approx(0.3)
    assert restarted.best_ckpt_logs["best_ckpt_global_step"] == 5
    assert not restarted.maybe_export_checkpoint(_checkpoint(2.0), {"loss": 0.4}, 6)
    assert restarted.best_ckpt_path.endswith("best_ckpt-5")
    assert restarted.maybe_export_checkpoint(_checkpoint(3.0), {"loss": 0.2}, 7)
    assert tf.train.load_checkpoint(restarted.best_ckpt_path).get_tensor("v/.ATTRIBUTES/VARIABLE_VALUE") == 3.0


def test_missing_metric_lists_the_available_ones(tmp_path):
    exporter = export.BestCheckpointExporter(str(tmp_path), "f1", "higher")
    with pytest.raises(KeyError, match=r"'f1'.*\['accuracy', 'validation_loss'\]"):
        exporter.maybe_export_checkpoint(_checkpoint(), {"validation_loss": 0.1, "accuracy": 0.9}, 1)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="metric_comp"):
        export.BestCheckpointExporter(str(tmp_path), "accuracy", "better")
    with pytest.raises(ValueError, match="metric_name"):
        export.BestCheckpointExporter(str(tmp_path), "", "higher")


def test_maybe_create_best_ckpt_exporter(tmp_path):
    config = experiment_config()
    assert export.maybe_create_best_ckpt_exporter(config, str(tmp_path)) is None
    config = dataclasses.replace(config, trainer=dataclasses.replace(
        config.trainer, best_checkpoint_export_subdir="best", best_checkpoint_eval_metric="accuracy"))
    exporter = export.maybe_create_best_ckpt_exporter(config, str(tmp_path))
    assert exporter.export_dir == str(tmp_path / "best") and exporter.metric_name == "accuracy"


def test_saved_model_writer_runs_on_each_new_best_with_the_checkpoints_model(tmp_path):
    written = []
    exporter = export.BestCheckpointExporter(str(tmp_path / "best"), "accuracy", "higher",
                                             saved_model_writer=lambda model, path: written.append((model, path)))
    model = tf.Module()
    checkpoint = tf.train.Checkpoint(model=model)
    assert exporter.maybe_export_checkpoint(checkpoint, {"accuracy": 0.5}, 1)
    assert not exporter.maybe_export_checkpoint(checkpoint, {"accuracy": 0.4}, 2)
    assert exporter.maybe_export_checkpoint(checkpoint, {"accuracy": 0.6}, 3)
    assert written == [(model, str(tmp_path / "best" / "saved_model"))] * 2
    with pytest.raises(ValueError, match="needs the checkpoint's `model`"):
        exporter.maybe_export_checkpoint(_checkpoint(), {"accuracy": 0.9}, 4)


def test_best_checkpoint_export_saved_model_binds_the_writer(tmp_path):
    config = experiment_config()
    trainer = dataclasses.replace(config.trainer, best_checkpoint_export_subdir="best",
                                  best_checkpoint_eval_metric="accuracy")
    plain = export.maybe_create_best_ckpt_exporter(dataclasses.replace(config, trainer=trainer), str(tmp_path))
    assert plain._saved_model_writer is None
    trainer = dataclasses.replace(trainer, best_checkpoint_export_saved_model=True)
    exporter = export.maybe_create_best_ckpt_exporter(dataclasses.replace(config, trainer=trainer), str(tmp_path))
    assert exporter._saved_model_writer.keywords == {"task_config": config.task}
