"""ParameterServerStrategy + ClusterCoordinator: 2 workers, 1 parameter server and the coordinator, on
localhost, every task running the same research.main command with its own TF_CONFIG; their faults."""
import re
import time

import pytest
import tensorflow as tf

from distributed import harness


PARAMETER_SERVER = ["--distribution_strategy=parameter_server"]


def _start_servers(cluster, spec, command, prefix=""):
    """Starts the ps and worker tasks (servers: they serve until killed, at the latest when the cluster exits)."""
    for job in ("ps", "worker"):
        for index in range(len(spec[job])):
            cluster.start(f"{prefix}{job}{index}", command, harness.tf_config(spec, job, index))


def _saved_steps(log: str) -> list[int]:
    return [int(step) for step in re.findall(r"Saved checkpoint \S+/ckpt-(\d+) ", log)]


@pytest.mark.slow
def test_worker_death_and_return_then_parameter_server_death_and_restart(tmp_path):
    """One cluster lifecycle (a cluster start costs about a minute here), with hang guards only:

    1. SIGKILL of worker 1 while the coordinator trains: ClusterCoordinator puts its closure back in
       the queue and training goes on on worker 0; worker 1 restarted at the same address rejoins
       ("has been recovered") and training goes on.
    2. SIGKILL of the parameter server: its variables are gone, so the coordinator ends the job with
       an error naming the parameter server and the last checkpoint.
    3. The whole cluster restarted resumes from the last checkpoint saved before the failure (same
       step, same training batches taken) and trains on to its new target.
    """
    records = harness.write_split_invariant_records(tmp_path / "records")
    model_dir = tmp_path / "ps_run"
    spec = harness.cluster_spec(chief=1, worker=2, ps=1)
    command = harness.main_command(model_dir, records, 100_000, flags=PARAMETER_SERVER)
    with harness.Cluster(tmp_path / "logs") as cluster:
        _start_servers(cluster, spec, command)
        coordinator = cluster.start("chief", command, harness.tf_config(spec, "chief", 0))
        cluster.wait_for_output("chief", "train | step: 4/", 150)  # hang guards, not timing assertions
        cluster.tasks["worker1"].kill()
        cluster.wait_for_output("chief", "Worker /job:worker/replica:0/task:1 failed", 90)
        failed_at = len(coordinator.stderr)
        cluster.start("worker1_restarted", command, harness.tf_config(spec, "worker", 1))
        cluster.wait_for_output("chief", "Worker /job:worker/replica:0/task:1 has been recovered", 120)
        recovered_at = coordinator.stderr.index("Worker /job:worker/replica:0/task:1 has been recovered")
        trained_while_down = harness.train_losses(coordinator.stderr[failed_at:recovered_at])
        assert trained_while_down, "no step was trained between the failure and the return of worker 1"
        deadline = time.monotonic() + 90  # hang guard: two more loops after the return
        while len(harness.train_losses(coordinator.stderr[recovered_at:])) < 2:
            assert coordinator.poll() is None and time.monotonic() < deadline, cluster.report()
            time.sleep(0.2)

        cluster.tasks["ps0"].kill()
        codes = cluster.wait(["chief"], 120)
        assert codes["chief"] not in (0, None)
        log = coordinator.stderr
        last_saved = _saved_steps(log)[-1]
        assert re.search(r"ParameterServerUnavailableError: Parameter server /job:ps/replica:0/task:0 is unreachable "
                         r"\(UnavailableError: .*\)\. Training cannot go on without it.* Restart every task of the "
                         rf"cluster .* training resumes from the last checkpoint, \S+/ckpt-{last_saved}\.", log), log[-5000:]
        cluster.kill_all()

        # The restart: a train_and_eval run from the checkpoint to a new target, on a new cluster.
        target = last_saved + 4
        restart = harness.main_command(model_dir, records, target, flags=PARAMETER_SERVER)
        spec = harness.cluster_spec(chief=1, worker=2, ps=1)
        _start_servers(cluster, spec, restart, prefix="restarted_")
        resumed = cluster.start("restarted_chief", restart, harness.tf_config(spec, "chief", 0))
        codes = cluster.wait(["restarted_chief"], 150)
        assert codes == {"restarted_chief": 0}, cluster.report()
        for name in ("restarted_ps0", "restarted_worker0", "restarted_worker1"):  # still serving
            assert cluster.tasks[name].poll() is None, cluster.report()
            assert "Starting the tf.distribute.Server of" in cluster.tasks[name].stderr
        assert "inter_op_parallelism_threads=3" in cluster.tasks["restarted_worker0"].stderr  # >= workers + 1
    log = resumed.stderr
    assert f"Restored {model_dir}/ckpt-{last_saved} (step {last_saved}, {last_saved} training batches taken)" in log
    assert "under ParameterServerStrategy" in log and "ClusterCoordinator.create_per_worker_dataset" in log
    assert sorted(harness.train_losses(log)) == [last_saved + 2, target]  # nothing trained twice, nothing skipped
    evaluation = harness.evaluation(resumed.stdout)
    assert 0 < evaluation["validation_loss"] < 10 and "masked_lm_accuracy" in evaluation
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{target}")
    assert (model_dir / "operative_config.gin").exists() and list((model_dir / "eval").iterdir())
    reader = tf.train.load_checkpoint(str(model_dir))
    assert reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == target
    assert reader.get_tensor("train_batches/.ATTRIBUTES/VARIABLE_VALUE") == target
