"""--cluster_resolver: TF_CONFIG, Slurm (srun's variables, here set by hand on localhost) and TPU."""

import numpy as np
import pytest
import tensorflow as tf

from distributed import harness
from research import main
from research.core import distribute


@pytest.fixture(name="slurm_env")
def fixture_slurm_env(monkeypatch):
    """Sets srun's variables for one task: slurm_env(proc_id, num_tasks, nodelist=..., tasks_per_node=...)."""
    def set_env(proc_id, num_tasks, nodelist="localhost", tasks_per_node=None):
        for name, value in harness.slurm_environment(proc_id, num_tasks).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SLURM_STEP_NODELIST", nodelist)
        monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", tasks_per_node or str(num_tasks))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return set_env


def test_slurm_two_nodes_one_task_each(slurm_env):
    slurm_env(1, 2, nodelist="node[01-02]", tasks_per_node="1(x2)")
    resolver = distribute.make_cluster_resolver("slurm", "multi_worker_mirrored")
    assert resolver.cluster_spec().as_dict() == {"worker": ["node01:8888", "node02:8888"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.num_accelerators() == {}  # CPU-only: the strategy must not look for GPUs
    assert resolver.rpc_layer == "grpc"


def test_slurm_tasks_of_one_node_count_ports_up_from_the_base(slurm_env):
    slurm_env(0, 2)
    resolver = distribute.make_cluster_resolver("slurm", "multi_worker_mirrored", slurm_port_base=9100)
    assert resolver.cluster_spec().as_dict() == {"worker": ["localhost:9100", "localhost:9101"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 0)


def test_slurm_parameter_server_jobs_take_ranks_in_name_order(slurm_env):
    jobs = {"chief": 1, "ps": 1, "worker": 2}
    seen = []
    for rank in range(4):
        slurm_env(rank, 4, nodelist="a,b", tasks_per_node="2(x2)")
        resolver = distribute.make_cluster_resolver("slurm", "parameter_server", slurm_jobs=jobs)
        seen.append((resolver.task_type, resolver.task_id))
    assert seen == [("chief", 0), ("ps", 0), ("worker", 0), ("worker", 1)]
    assert resolver.cluster_spec().as_dict() == {"chief": ["a:8888"], "ps": ["a:8889"],
                                                 "worker": ["b:8888", "b:8889"]}


def test_slurm_outside_srun_names_the_missing_variables(monkeypatch):
    for name in distribute.SLURM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=r"missing: SLURM_PROCID, SLURM_STEP_NUM_TASKS, .*srun python -m"):
        distribute.make_cluster_resolver("slurm", "multi_worker_mirrored")


def test_bad_resolver_names_and_combinations(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=r"Unknown cluster_resolver 'k8s'; valid names: \['tf_config', 'slurm', 'tpu'\]"):
        distribute.make_cluster_resolver("k8s", "multi_worker_mirrored")
    with pytest.raises(ValueError, match="cluster_resolver='slurm' goes with distribution_strategy "
                                         "'multi_worker_mirrored' or 'parameter_server', got 'mirrored'"):
        distribute.get_distribution_strategy("mirrored", cluster_resolver="slurm")
    with pytest.raises(ValueError, match="cluster_resolver='tpu' goes with distribution_strategy 'tpu'"):
        distribute.get_distribution_strategy("multi_worker_mirrored", cluster_resolver="tpu")
    with pytest.raises(ValueError, match="TF_CONFIG environment variable is not set"):
        distribute.get_distribution_strategy("multi_worker_mirrored", cluster_resolver="tf_config")
    with pytest.raises(RuntimeError, match="tpu_address='local'"):  # no TPU on this machine
        distribute.get_distribution_strategy("tpu", cluster_resolver="tpu", tpu_address="local")


def test_tf_config_resolver_reads_tf_config(monkeypatch):
    spec = {"worker": ["w0:2222", "w1:2222"]}
    monkeypatch.setenv("TF_CONFIG", harness.tf_config(spec, "worker", 1))
    resolver = distribute.make_cluster_resolver("tf_config", "multi_worker_mirrored")
    assert resolver.cluster_spec().as_dict() == spec and (resolver.task_type, resolver.task_id) == ("worker", 1)


def test_cluster_resolver_flag_becomes_a_binding():
    assert main.strategy_bindings(None, None, "slurm") == [
        "distribute.get_distribution_strategy.cluster_resolver = 'slurm'"]
    assert main.strategy_bindings(None, None, None) == []


@pytest.mark.slow
def test_two_srun_tasks_train_as_one_multi_worker_job(tmp_path):
    """Two research.main processes with the variables srun sets (one node, two tasks) and no
    TF_CONFIG: `--cluster_resolver=slurm` builds one MultiWorkerMirroredStrategy over both, on ports
    base and base + 1; both log the same all-reduced losses, and the chief checkpoints. The evaluation
    runs on the chief alone (sharding='chief', bound in gin): task 1 steps along on empty batches."""
    records = harness.write_split_invariant_records(tmp_path / "records")
    port_base = harness.consecutive_free_ports(2)
    model_dir = tmp_path / "slurm_run"
    command = harness.main_command(model_dir, records, 4, *harness.SPLIT_INVARIANT,
                                   f"distribute.get_distribution_strategy.slurm_port_base = {port_base}",
                                   "eval/masked_lm.PretrainDataConfig.sharding = 'chief'",
                                   flags=["--distribution_strategy=multi_worker_mirrored", "--cluster_resolver=slurm"])
    with harness.Cluster(tmp_path / "logs") as cluster:
        for rank in range(2):
            cluster.start(f"task{rank}", command, **harness.slurm_environment(rank, 2))
        codes = cluster.wait(["task0", "task1"], 150)  # hang guard, not a timing assertion
    assert codes == {"task0": 0, "task1": 0}, cluster.report()
    expected_cluster = {"worker": [f"localhost:{port_base}", f"localhost:{port_base + 1}"]}
    losses = []
    for rank in range(2):
        log = cluster.tasks[f"task{rank}"].stderr
        assert f"Cluster from SimpleClusterResolver: {expected_cluster}; this task is worker:{rank}" in log
        assert "MultiWorkerMirroredStrategy: 2 replicas in sync" in log
        losses.append(harness.train_losses(log))
    assert sorted(losses[0]) == [2, 4]
    np.testing.assert_allclose([losses[1][s] for s in (2, 4)], [losses[0][s] for s in (2, 4)], rtol=1e-6)
    assert "Not the chief" in cluster.tasks["task1"].stderr and "Not the chief" not in cluster.tasks["task0"].stderr
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-4")
    evaluations = [harness.evaluation(cluster.tasks[f"task{rank}"].stdout) for rank in range(2)]
    assert evaluations[0] == evaluations[1] and np.isfinite(evaluations[0]["validation_loss"])
    assert "sharding = 'chief'" in (model_dir / "operative_config.gin").read_text()
