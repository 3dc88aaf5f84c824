"""MultiWorkerMirroredStrategy: two research.main worker processes on localhost, each with its TF_CONFIG."""
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from distributed import harness

MULTI_WORKER = ["--distribution_strategy=multi_worker_mirrored"]


def _start_workers(cluster, spec, model_dir, records, train_steps, *params, prefix="worker", **env):
    for index in range(2):
        cluster.start(f"{prefix}{index}", harness.main_command(model_dir, records, train_steps, *params,
                                                               flags=MULTI_WORKER),
                      harness.tf_config(spec, "worker", index), **env)
    return [f"{prefix}0", f"{prefix}1"]


@pytest.mark.slow
def test_two_workers_train_evaluate_checkpoint_and_match_one_process(tmp_path):
    """Same global batch (4 = 2 workers x 2), same seed, same global batches (split-invariant data).

    Tolerance rtol 2e-5 on the logged losses (printed to 6 significant digits) and on the evaluation:
    the workers reduce half-batches and all-reduce their gradients, one process reduces the whole
    batch, so only float32 summation order differs (observed ~2e-6 relative after 6 AdamW steps).
    """
    records = harness.write_split_invariant_records(tmp_path / "records")
    model_dir = tmp_path / "multi_worker"
    worker_tmp = tmp_path / "worker_tmp"  # the workers' TMPDIR: where a non-chief's temporary dir is made
    worker_tmp.mkdir()
    with harness.Cluster(tmp_path / "logs") as cluster:
        single = cluster.start("single", harness.main_command(tmp_path / "single", records, 6,
                                                              *harness.SPLIT_INVARIANT))
        cluster.wait(["single"], 100)
        names = _start_workers(cluster, harness.cluster_spec(worker=2), model_dir, records, 6,
                               *harness.SPLIT_INVARIANT, TMPDIR=str(worker_tmp))
        codes = cluster.wait(names, 100)
    assert single.poll() == 0 and codes == {"worker0": 0, "worker1": 0}, cluster.report()
    chief, other = cluster.tasks["worker0"], cluster.tasks["worker1"]
    assert "under CollectiveAllReduceStrategy" in chief.stderr  # MultiWorkerMirroredStrategy's class

    # The chief (worker 0) writes model_dir; worker 1 wrote to a temporary directory and removed it.
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-6")
    assert (model_dir / "operative_config.gin").exists()
    assert list((model_dir / "train").iterdir()) and list((model_dir / "eval").iterdir())
    temporary = re.search(r"Not the chief: checkpoints go to (\S+),", other.stderr).group(1)
    assert os.path.dirname(temporary) == str(worker_tmp) and "workertemp_1_" in os.path.basename(temporary)
    assert not os.path.exists(temporary) and not [p for p in worker_tmp.iterdir() if "workertemp" in p.name]
    assert f"Removed the temporary directory {temporary}" in other.stderr
    assert "Not the chief" not in chief.stderr

    single_losses = harness.train_losses(single.stderr)
    for worker in (chief, other):  # both workers log the same all-reduced losses
        losses = harness.train_losses(worker.stderr)
        assert sorted(losses) == [2, 4, 6]
        np.testing.assert_allclose([losses[s] for s in (2, 4, 6)], [single_losses[s] for s in (2, 4, 6)],
                                   rtol=2e-5)
        evaluation, single_evaluation = harness.evaluation(worker.stdout), harness.evaluation(single.stdout)
        np.testing.assert_allclose(evaluation["validation_loss"], single_evaluation["validation_loss"], rtol=2e-5)
        assert evaluation["masked_lm_accuracy"] == pytest.approx(single_evaluation["masked_lm_accuracy"])


@pytest.mark.slow
def test_killed_worker_fails_the_job_and_a_restart_resumes(tmp_path):
    """SIGKILL of worker 1 mid-run: worker 0 exits non-zero naming the dead task instead of hanging (the
    strategy's peer health check aborts the collectives; `communication_timeout_seconds` bounds any
    collective as well). Both restarted resume from the chief's last checkpoint. The waits' deadlines
    are hang guards, generous for a shared host, not speed claims."""
    records = harness.write_split_invariant_records(tmp_path / "records")
    model_dir = tmp_path / "multi_worker"
    params = [*harness.SPLIT_INVARIANT, "distribute.get_distribution_strategy.communication_timeout_seconds = 30.0"]
    with harness.Cluster(tmp_path / "logs") as cluster:
        names = _start_workers(cluster, harness.cluster_spec(worker=2), model_dir, records, 100_000, *params)
        cluster.wait_for_output("worker0", "Saved checkpoint", 90)
        cluster.tasks["worker1"].kill()
        codes = cluster.wait(["worker0"], 300)  # hang guard only
        survivor = cluster.tasks["worker0"]
        assert codes["worker0"] not in (0, None)
        assert re.search(r"(UnavailableError|DeadlineExceededError).*", survivor.stderr), survivor.stderr[-3000:]
        assert "/job:worker/replica:0/task:1" in survivor.stderr or "DeadlineExceeded" in survivor.stderr

        latest = tf.train.latest_checkpoint(str(model_dir))
        saved_step = int(latest.rsplit("-", 1)[1])
        assert saved_step >= 2
        target = saved_step + 4
        names = _start_workers(cluster, harness.cluster_spec(worker=2), model_dir, records, target, *params,
                               prefix="restarted")
        codes = cluster.wait(names, 100)
    assert codes == {"restarted0": 0, "restarted1": 0}, cluster.report()
    for name in names:
        stderr = cluster.tasks[name].stderr
        assert f"Restored {latest} (step {saved_step}" in stderr
        assert sorted(harness.train_losses(stderr)) == [saved_step + 2, saved_step + 4]  # not from step 0
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{target}")


@pytest.mark.slow
def test_demo_experiment_in_train_and_eval_on_two_workers_with_one_file_of_each(tmp_path):
    """The demo's default mode on 2 workers with one training and one validation file (the demo writes
    one validation shard), against one process.

    Training: the file alternates two sequences S0, S1; split by element, worker 0 reads the S0s and
    worker 1 the S1s, so each global batch is {S0, S0, S1, S1}, as in one process reading the file in
    order: the same losses (rtol 2e-5, float32 summation order). Evaluation: 9 sequences, split 5/4 by
    element; worker 1 steps along on an empty batch while worker 0 reads its last one. Every position
    is predicted (SPLIT_INVARIANT), so the masked-LM accuracy over the whole validation set must be the
    one process's (one argmax flip allowed for float round-off: 1 of 90 positions).
    """
    s0, s1 = harness.random_sequences(2, seed=3)
    train = harness.write_sequences(tmp_path / "records" / "train-00000-of-00001.tfrecord", [s0, s1] * 8)
    validation = harness.write_sequences(tmp_path / "records" / "validation-00000-of-00001.tfrecord",
                                         harness.random_sequences(9, seed=4))
    with harness.Cluster(tmp_path / "logs") as cluster:
        single = cluster.start("single", harness.demo_command(tmp_path / "single", train, validation, 4,
                                                              *harness.SPLIT_INVARIANT))
        spec = harness.cluster_spec(worker=2)
        for index in range(2):
            cluster.start(f"worker{index}", harness.demo_command(tmp_path / "multi_worker", train, validation, 4,
                                                                 *harness.SPLIT_INVARIANT, flags=MULTI_WORKER),
                          harness.tf_config(spec, "worker", index))
        codes = cluster.wait(["single", "worker0", "worker1"], 240)  # hang guard, not a timing assertion
    assert codes == {"single": 0, "worker0": 0, "worker1": 0}, cluster.report()
    single_losses, single_eval = harness.train_losses(single.stderr), harness.evaluation(single.stdout)
    for name in ("worker0", "worker1"):
        worker = cluster.tasks[name]
        assert "under CollectiveAllReduceStrategy" in worker.stderr
        assert "1 file(s) for 2 input pipelines, so every worker reads all of them" in worker.stderr  # training
        assert "Evaluation data " in worker.stderr and "sharding by element" in worker.stderr
        losses = harness.train_losses(worker.stderr)
        assert sorted(losses) == [2, 4]
        np.testing.assert_allclose([losses[2], losses[4]], [single_losses[2], single_losses[4]], rtol=2e-5)
        evaluation = harness.evaluation(worker.stdout)
        assert np.isfinite(evaluation["validation_loss"])
        assert evaluation["masked_lm_accuracy"] == pytest.approx(single_eval["masked_lm_accuracy"], abs=1.01 / 90)
    assert tf.train.latest_checkpoint(str(tmp_path / "multi_worker")).endswith("ckpt-4")
