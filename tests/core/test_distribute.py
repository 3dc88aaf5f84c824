"""get_distribution_strategy by name, and MirroredStrategy over two logical CPUs (in a subprocess)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from research.core import distribute

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_one_device_off_and_default():
    strategy = distribute.get_distribution_strategy("one_device")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1
    for name in ("off", "default", "OFF"):
        assert distribute.get_distribution_strategy(name) is tf.distribute.get_strategy()


def test_mirrored_on_cpu():
    strategy = distribute.get_distribution_strategy("mirrored", num_gpus=0)
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 1


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"'nope'.*one_device.*mirrored.*multi_worker_mirrored.*tpu"):
        distribute.get_distribution_strategy("nope")


def test_bad_arguments():
    with pytest.raises(ValueError, match="'off'"):
        distribute.get_distribution_strategy(False)
    with pytest.raises(ValueError, match="num_gpus"):
        distribute.get_distribution_strategy("one_device", num_gpus=-1)
    with pytest.raises(ValueError, match="mirrored"):
        distribute.get_distribution_strategy("one_device", num_gpus=2)
    with pytest.raises(ValueError, match="all_reduce_alg"):
        distribute.get_distribution_strategy("mirrored", all_reduce_alg="carrier_pigeon")
    with pytest.raises(ValueError, match="all_reduce_alg"):
        distribute.get_distribution_strategy("multi_worker_mirrored", all_reduce_alg="hierarchical_copy")


def test_tpu_without_a_tpu_names_the_address():
    with pytest.raises(RuntimeError, match="tpu_address='local'"):
        distribute.get_distribution_strategy("tpu", tpu_address="local")


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from research.core import distribute, train_lib
    from toy_task import ToyDataConfig, ToyTask, ToyTaskConfig, experiment_config

    # One batch of 8 examples repeated: every step sees the same data, so one device and two replicas
    # (4 examples each, gradients averaged) must take the same steps.
    task_config = ToyTaskConfig(train_data=ToyDataConfig(num_examples=8),
                                validation_data=ToyDataConfig(num_examples=24, is_training=False, seed=1))
    config = experiment_config(task=task_config, train_steps=4, steps_per_loop=2, validation_interval=4)
    results = {}
    for name, strategy in [
            ("one_device", distribute.get_distribution_strategy("one_device")),
            ("mirrored", distribute.get_distribution_strategy("mirrored", devices=["/cpu:0", "/cpu:1"]))]:
        keras.utils.set_random_seed(3)
        model, logs = train_lib.run_experiment(distribution_strategy=strategy, task=ToyTask(task_config),
                                               mode="train_and_eval", params=config,
                                               model_dir=sys.argv[1] + "/" + name)
        results[name] = {"replicas": strategy.num_replicas_in_sync,
                         "kernel": model.head.kernel.numpy().tolist(),
                         "logs": {k: float(v) for k, v in logs.items()},
                         "checkpoint": tf.train.latest_checkpoint(sys.argv[1] + "/" + name)}
    print("RESULT " + json.dumps(results))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(_MIRRORED_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_REPO, os.path.join(_REPO, "tests", "core")]),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    results = json.loads(line[len("RESULT "):])
    mirrored, one_device = results["mirrored"], results["one_device"]
    assert mirrored["replicas"] == 2
    assert mirrored["checkpoint"].endswith("ckpt-4")
    assert mirrored["logs"]["num_eval_steps"] == 3  # 24 validation examples in global batches of 8
    assert abs(mirrored["logs"]["validation_loss"] - one_device["logs"]["validation_loss"]) < 1e-4
    np.testing.assert_allclose(mirrored["kernel"], one_device["kernel"], atol=1e-5)
