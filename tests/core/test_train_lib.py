"""run_experiment: modes, restart from the saved step, summaries, continuous eval, NaN stop, SIGTERM."""
import dataclasses
import glob
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from research.core import base_trainer, train_lib
from toy_task import ToyDataConfig, ToyTask, ToyTaskConfig, experiment_config

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# One batch of 8 examples, repeated: every step sees the same data, so a run interrupted and resumed
# takes exactly the steps of an uninterrupted one.
_FIXED_BATCH = ToyTaskConfig(train_data=ToyDataConfig(num_examples=8),
                             validation_data=ToyDataConfig(num_examples=24, is_training=False, seed=1))



def run(model_dir, mode="train", config=None, **kwargs):
    config = config or experiment_config(task=_FIXED_BATCH)
    return train_lib.run_experiment(distribution_strategy=tf.distribute.get_strategy(), task=ToyTask(config.task),
                                    mode=mode, params=config, model_dir=str(model_dir), **kwargs)


def _steps(model_dir):
    return sorted(int(p.split("ckpt-")[1].split(".")[0]) for p in glob.glob(f"{model_dir}/ckpt-*.index"))


def _kernel(model):
    return model.head.kernel.numpy()


class RecordingTrainer(base_trainer.Trainer):
    """Records the global step at each train() call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_steps = []

    def train(self, num_steps):
        self.start_steps.append(int(self.global_step.numpy()))
        return super().train(num_steps)


def test_restart_continues_from_the_saved_step_with_optimizer_state(tmp_path):
    keras.utils.set_random_seed(7)
    straight, _ = run(tmp_path / "straight", config=experiment_config(task=_FIXED_BATCH, train_steps=6))
    keras.utils.set_random_seed(7)
    run(tmp_path / "resumed", config=experiment_config(task=_FIXED_BATCH, train_steps=4))
    assert _steps(tmp_path / "resumed") == [2, 4]

    keras.utils.set_random_seed(99)  # a different initialization, overwritten by the restore
    config = experiment_config(task=_FIXED_BATCH, train_steps=6)
    trainer = train_lib.create_trainer(config, ToyTask(config.task), train=True, evaluate=False,
                                       trainer_cls=RecordingTrainer)
    resumed, _ = run(tmp_path / "resumed", config=config, trainer=trainer)
    assert trainer.start_steps == [4]
    assert int(trainer.global_step.numpy()) == 6
    assert _steps(tmp_path / "resumed") == [2, 4, 6]
    # SGD with momentum: equal weights need the restored momentum as well as the weights.
    np.testing.assert_allclose(_kernel(resumed), _kernel(straight), rtol=1e-5, atol=1e-6)
    reader = tf.train.load_checkpoint(str(tmp_path / "resumed" / "ckpt-6"))
    assert reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 6


def test_momentum_matters_for_the_restart_test(tmp_path):
    """Guards the test above: restoring weights without the optimizer state gives other weights."""
    keras.utils.set_random_seed(7)
    straight, _ = run(tmp_path / "straight", config=experiment_config(task=_FIXED_BATCH, train_steps=6))
    keras.utils.set_random_seed(7)
    run(tmp_path / "part", config=experiment_config(task=_FIXED_BATCH, train_steps=4))
    config = experiment_config(task=_FIXED_BATCH, train_steps=2)
    trainer = train_lib.create_trainer(config, ToyTask(config.task), train=True, evaluate=False)
    tf.train.Checkpoint(model=trainer.model).read(str(tmp_path / "part" / "ckpt-4")).expect_partial()
    fresh, _ = run(tmp_path / "fresh", config=config, trainer=trainer)
    assert not np.allclose(_kernel(fresh), _kernel(straight), rtol=1e-5, atol=1e-6)


def _scalar_tags(directory):
    tags = set()
    for path in glob.glob(f"{directory}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_train_and_eval_writes_summaries_operative_config_and_returns_eval_logs(tmp_path):
    config = experiment_config(task=_FIXED_BATCH, train_steps=4, validation_interval=2)
    model, logs = run(tmp_path, mode="train_and_eval", config=config, operative_config="a.b = 1\n")
    assert isinstance(model, keras.Model)
    assert {"validation_loss", "accuracy", "num_eval_steps"} <= set(logs)
    assert logs["num_eval_steps"] == 3
    assert (tmp_path / "operative_config.gin").read_text() == "a.b = 1\n"
    assert {"training_loss", "learning_rate", "accuracy", "steps_per_second",
            "examples_per_second"} <= _scalar_tags(tmp_path / "train")
    assert {"validation_loss", "accuracy"} <= _scalar_tags(tmp_path / "eval")
    assert _steps(tmp_path) == [2, 4]
    # A restart does not overwrite the operative config of step 0.
    run(tmp_path, mode="train", config=dataclasses.replace(config, trainer=dataclasses.replace(
        config.trainer, train_steps=6)), operative_config="a.b = 2\n")
    assert (tmp_path / "operative_config.gin").read_text() == "a.b = 1\n"


def test_train_mode_returns_empty_logs_unless_post_eval(tmp_path):
    config = experiment_config(task=_FIXED_BATCH, train_steps=2)
    assert run(tmp_path / "a", config=config)[1] == {}
    _, logs = run(tmp_path / "b", config=config, run_post_eval=True, save_summary=False)
    assert "validation_loss" in logs
    assert not os.path.exists(tmp_path / "b" / "train")


def test_eval_and_continuous_eval_use_the_checkpoint(tmp_path):
    config = experiment_config(task=_FIXED_BATCH, train_steps=4)
    trained, _ = run(tmp_path, config=config)
    _, eval_logs = run(tmp_path, mode="eval", config=config)
    keras.utils.set_random_seed(5)
    continuous_model, continuous_logs = run(tmp_path, mode="continuous_eval", config=config)
    np.testing.assert_allclose(_kernel(continuous_model), _kernel(trained))
    assert continuous_logs["validation_loss"] == pytest.approx(eval_logs["validation_loss"], rel=1e-5)
    assert continuous_logs["num_eval_steps"] == 3
    assert "validation_loss" in _scalar_tags(tmp_path / "eval")


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    task = ToyTaskConfig(train_data=ToyDataConfig(nan_from_batch=5))
    config = experiment_config(task=task, train_steps=10)
    with pytest.raises(FloatingPointError, match="step 6"):
        run(tmp_path, config=config)
    assert _steps(tmp_path) == [2, 4]
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt-4"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), name


def test_loss_above_upper_bound_stops(tmp_path):
    config = experiment_config(task=_FIXED_BATCH, train_steps=4, loss_upper_bound=1e-6)
    with pytest.raises(train_lib.LossDivergedError, match=r"loss_upper_bound.*step 2"):
        run(tmp_path, config=config)
    assert _steps(tmp_path) == []


def test_recovery_restores_the_last_checkpoint(tmp_path):
    task = ToyTaskConfig(train_data=ToyDataConfig(nan_from_batch=5))
    config = experiment_config(task=task, train_steps=10, recovery_max_trials=1)
    with pytest.raises(FloatingPointError, match="latest checkpoint: .*ckpt-4"):
        run(tmp_path, config=config)  # recovers once to step 4, then the NaN data comes back
    assert _steps(tmp_path) == [2, 4]


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        run(tmp_path, mode="fit")


_SIGTERM_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import tensorflow as tf
    from research.core import base_trainer, train_lib
    from toy_task import ToyTask, experiment_config

    class SigtermTrainer(base_trainer.Trainer):
        loops = 0
        def train_loop_end(self):
            logs = super().train_loop_end()
            SigtermTrainer.loops += 1
            if SigtermTrainer.loops == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return logs

    config = experiment_config(train_steps=1000, steps_per_loop=2, checkpoint_interval=100)
    task = ToyTask(config.task)
    trainer = train_lib.create_trainer(config, task, train=True, evaluate=False, trainer_cls=SigtermTrainer)
    train_lib.run_experiment(distribution_strategy=tf.distribute.get_strategy(), task=task, mode="train",
                             params=config, model_dir=sys.argv[1], trainer=trainer)
    print("NOT PREEMPTED")
""")


@pytest.mark.slow
def test_sigterm_saves_at_the_current_step_and_exits_with_the_preemption_code(tmp_path):
    script = tmp_path / "sigterm.py"
    script.write_text(_SIGTERM_SCRIPT)
    model_dir = tmp_path / "model"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_REPO, os.path.join(_REPO, "tests", "core")]),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(script), str(model_dir)], env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == train_lib.PREEMPTED_EXIT_CODE == 143, proc.stderr[-3000:]
    assert "NOT PREEMPTED" not in proc.stdout
    assert _steps(model_dir) == [6]
    reader = tf.train.load_checkpoint(str(model_dir / "ckpt-6"))
    assert reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 6
