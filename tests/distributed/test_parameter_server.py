"""ParameterServerStrategy + ClusterCoordinator: 2 workers, 1 parameter server and the coordinator, on
localhost, every task running the same research.main command with its own TF_CONFIG."""
import pytest
import tensorflow as tf

from distributed import harness


@pytest.mark.slow
def test_parameter_server_cluster_trains_evaluates_and_checkpoints(tmp_path):
    records = harness.write_split_invariant_records(tmp_path / "records")
    model_dir = tmp_path / "ps_run"
    spec = harness.cluster_spec(chief=1, worker=2, ps=1)
    command = harness.main_command(model_dir, records, 6, flags=["--distribution_strategy=parameter_server"])
    with harness.Cluster(tmp_path / "logs") as cluster:
        for job, count in (("ps", 1), ("worker", 2)):
            for index in range(count):  # servers: they serve until killed (when the cluster exits)
                cluster.start(f"{job}{index}", command, harness.tf_config(spec, job, index))
        coordinator = cluster.start("chief", command, harness.tf_config(spec, "chief", 0))
        codes = cluster.wait(["chief"], 110)
        assert codes == {"chief": 0}, cluster.report()
        for name in ("ps0", "worker0", "worker1"):  # still serving: only the coordinator finishes
            assert cluster.tasks[name].poll() is None, cluster.report()
            assert "Starting the tf.distribute.Server of" in cluster.tasks[name].stderr
        assert "inter_op_parallelism_threads=3" in cluster.tasks["worker0"].stderr  # >= workers + 1
    log = coordinator.stderr
    assert "under ParameterServerStrategy" in log
    assert "ClusterCoordinator.create_per_worker_dataset" in log
    assert sorted(harness.train_losses(log)) == [2, 4, 6]
    evaluation = harness.evaluation(coordinator.stdout)
    assert 0 < evaluation["validation_loss"] < 10 and "masked_lm_accuracy" in evaluation
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-6")
    assert (model_dir / "operative_config.gin").exists() and list((model_dir / "eval").iterdir())
    reader = tf.train.load_checkpoint(str(model_dir))
    assert reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 6
