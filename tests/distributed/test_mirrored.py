"""MirroredStrategy on two virtual CPU devices against one device, through the research.main binary.

Both runs see the same global batches (harness.write_split_invariant_records), the same seed and no
dropout. Plain SGD (no momentum, no clipping, no weight decay) is used on purpose: its update is linear
in the gradient, so a replica gradient that is summed without `scale_loss` (twice the global-mean
gradient) changes the weights visibly, where Adam's scale invariance would hide it.
"""
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from distributed import harness

SGD = ["optimization.OptimizerConfig.type = 'sgd'", "optimization.OptimizerConfig.momentum = 0.0",
       "optimization.OptimizerConfig.global_clipnorm = None", "optimization.OptimizerConfig.weight_decay_rate = 0.0",
       "LEARNING_RATE = 0.5"]
TWO_CPUS = ["--distribution_strategy=mirrored", "--gin_param=distribute.get_distribution_strategy.devices = "
            "['/cpu:0', '/cpu:1']"]

# research.main in a process that first splits its CPU into two logical devices.
_TWO_CPU_MAIN = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from absl import app
    from research import main
    app.run(main.main, argv=sys.argv)
""")


def _weights(model_dir):
    reader = tf.train.load_checkpoint(str(model_dir))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("optimizer/_trainable_variables/"))
    return {name: reader.get_tensor(name) for name in names}


@pytest.mark.slow
def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    """Losses, evaluation and final weights of 6 SGD steps agree to rtol 2e-5.

    Tolerance: the two runs compute the same sums in a different order (each replica reduces its half
    of the batch, then the all-reduce adds the halves; oneDNN may also block matmuls differently for
    2 vs 4 rows), so they agree to float32 round-off growing over the steps: observed ~1e-6 relative.
    2e-5 is far below what a wrong gradient scale does (`scale_loss=False` doubles every update: the
    weights move by ~1e-2 relative, checked below) or a wrong per-replica batch.
    """
    records = harness.write_split_invariant_records(tmp_path / "records")
    params = harness.SPLIT_INVARIANT + SGD
    script = tmp_path / "two_cpu_main.py"
    script.write_text(_TWO_CPU_MAIN)
    with harness.Cluster(tmp_path / "logs") as cluster:
        one = cluster.start("one_device", harness.main_command(tmp_path / "one", records, 6, *params))
        cluster.wait(["one_device"], 100)
        command = harness.main_command(tmp_path / "two", records, 6, *params, flags=TWO_CPUS)
        two = cluster.start("mirrored", [sys.executable, str(script), *command[3:]])
        unscaled = cluster.start("mirrored_unscaled", [sys.executable, str(script), *harness.main_command(
            tmp_path / "unscaled", records, 6, *params, "masked_lm.MaskedLMConfig.scale_loss = False",
            flags=TWO_CPUS)[3:]])
        codes = cluster.wait(["mirrored", "mirrored_unscaled"], 110)
    assert one.poll() == 0 and codes == {"mirrored": 0, "mirrored_unscaled": 0}, cluster.report()
    assert "under MirroredStrategy" in two.stderr and "CPU:1" in two.stderr
    one_losses, two_losses = harness.train_losses(one.stderr), harness.train_losses(two.stderr)
    assert sorted(one_losses) == sorted(two_losses) == [2, 4, 6]
    np.testing.assert_allclose([two_losses[s] for s in (2, 4, 6)], [one_losses[s] for s in (2, 4, 6)], rtol=2e-5)
    assert one_losses[6] < one_losses[2] - 1e-3  # it learns: the comparison is not between constants
    one_eval, two_eval = harness.evaluation(one.stdout), harness.evaluation(two.stdout)
    assert abs(two_eval["validation_loss"] - one_eval["validation_loss"]) <= 2e-5 * one_eval["validation_loss"]
    one_weights, two_weights = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one_weights.keys() == two_weights.keys() and len(one_weights) > 5
    for name in one_weights:
        np.testing.assert_allclose(two_weights[name], one_weights[name], rtol=2e-5, atol=2e-6, err_msg=name)
    # Without scale_loss each replica's gradient of its own mean is summed: twice the global gradient.
    unscaled_weights = _weights(tmp_path / "unscaled")
    moved = max(np.max(np.abs(unscaled_weights[n] - one_weights[n])) for n in one_weights)
    assert moved > 1e-3, moved
