"""Distribution strategies by name, as Model Garden's `official/common/distribute_utils.py`.

Call `get_distribution_strategy` before any other TensorFlow work: multi-worker strategies must be
created before the runtime initializes its devices.
"""
import contextlib
import os
import re
import tempfile

import tensorflow as tf
from absl import logging

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "parameter_server", "tpu", "off", "default")
CLUSTER_RESOLVERS = ("tf_config", "slurm", "tpu")
_CLUSTER_STRATEGIES = {"tf_config": ("multi_worker_mirrored", "parameter_server"),
                       "slurm": ("multi_worker_mirrored", "parameter_server"), "tpu": ("tpu",)}
# What SlurmClusterResolver reads (srun sets them in every task of a job step).
SLURM_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")


def _collective_communication(all_reduce_alg):
    """The CommunicationOptions implementation for MultiWorkerMirroredStrategy: None/'ring'/'nccl'."""
    implementations = {
        None: tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }
    if all_reduce_alg not in implementations:
        raise ValueError(f"all_reduce_alg for multi_worker_mirrored must be None, 'ring' or 'nccl', "
                         f"got {all_reduce_alg!r}")
    return implementations[all_reduce_alg]


def _mirrored_cross_device_ops(all_reduce_alg, num_packs):
    """The cross-device ops for MirroredStrategy: None (TF picks), 'nccl' or 'hierarchical_copy'."""
    if all_reduce_alg is None:
        return None
    ops = {"nccl": tf.distribute.NcclAllReduce, "hierarchical_copy": tf.distribute.HierarchicalCopyAllReduce}
    if all_reduce_alg not in ops:
        raise ValueError(f"all_reduce_alg for mirrored must be None, 'nccl' or 'hierarchical_copy', "
                         f"got {all_reduce_alg!r}")
    return ops[all_reduce_alg](num_packs=num_packs)


def tpu_initialize(tpu_address: str | None, resolver=None):
    """Connects to the TPU at `tpu_address` ('' or 'local': this host) and initializes the TPU system.

    `resolver`: a TPUClusterResolver already made (by `make_cluster_resolver('tpu', ...)`), or None.

    Returns:
      The TPUClusterResolver.

    Raises:
      RuntimeError: no TPU could be reached or initialized; the message names the address. (A remote
        address that nothing answers may block while connecting: that is TensorFlow's behaviour.)
    """
    try:
        resolver = resolver or tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        if tpu_address not in (None, "", "local"):
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise _tpu_error(tpu_address, error) from error
    return resolver


def _tpu_error(tpu_address, error) -> RuntimeError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return RuntimeError(f"Could not initialize the TPU at tpu_address={tpu_address!r}: {first_line}")


def slurm_cluster_resolver(port_base: int = 8888, jobs: dict | None = None):
    """The cluster of this Slurm job step, from the variables srun sets in each task (SLURM_VARIABLES).

    Args:
      port_base: task k of a node listens on port_base + k (TensorFlow's SlurmClusterResolver); the
        ports must be free on every node.
      jobs: tasks per job, e.g. {'chief': 1, 'ps': 1, 'worker': 2} for parameter servers; None: every
        task is a 'worker' (MultiWorkerMirroredStrategy; worker 0 is the chief). Ranks (SLURM_PROCID)
        go to the jobs in sorted name order: chief, then ps, then worker.

    Returns:
      TensorFlow's SlurmClusterResolver on nodes with GPUs (it sets CUDA_VISIBLE_DEVICES per task).
      On CPU-only nodes, a SimpleClusterResolver over the cluster it resolves: TensorFlow's resolver
      hands out GPUs to tasks and fails without any (nvidia-smi missing, or a zero step), so it resolves
      with one placeholder GPU per task, not exported, and the strategy is told there is none.

    Raises:
      RuntimeError: a Slurm variable is missing (not inside `srun`), naming it.
    """
    missing = [name for name in SLURM_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(f"cluster_resolver='slurm' needs the variables srun sets in each task; missing: "
                           f"{', '.join(missing)}. Start every task with `srun python -m research.main ...` "
                           "inside an allocation (sbatch or salloc).")
    slurm = tf.distribute.cluster_resolver.SlurmClusterResolver
    if tf.config.list_physical_devices("GPU"):  # lists devices without initializing the runtime
        return slurm(jobs=jobs, port_base=port_base)
    tasks = int(os.environ["SLURM_STEP_NUM_TASKS"])
    resolver = slurm(jobs=jobs, port_base=port_base, gpus_per_node=tasks, gpus_per_task=1, auto_set_gpu=False)
    cluster_spec = resolver.cluster_spec()  # also sets task_type and task_id
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        cluster_spec, task_type=resolver.task_type, task_id=resolver.task_id, rpc_layer=resolver.rpc_layer,
        num_accelerators={})


def make_cluster_resolver(name: str, distribution_strategy: str, tpu_address: str | None = None,
                          slurm_port_base: int = 8888, slurm_jobs: dict | None = None):
    """The cluster resolver `name` ('tf_config', 'slurm' or 'tpu') for `distribution_strategy`.

    'tf_config' reads the TF_CONFIG variable (Kubernetes operators and most launchers set it);
    'slurm' the variables srun sets (see `slurm_cluster_resolver`); 'tpu' finds the TPU at
    tpu_address (a name, grpc://host:port, or 'local' on a TPU VM).

    Raises:
      ValueError: an unknown name, a resolver that does not go with the strategy, or 'tf_config'
        without TF_CONFIG.
    """
    if name not in CLUSTER_RESOLVERS:
        raise ValueError(f"Unknown cluster_resolver {name!r}; valid names: {list(CLUSTER_RESOLVERS)}")
    if distribution_strategy not in _CLUSTER_STRATEGIES[name]:
        raise ValueError(f"cluster_resolver={name!r} goes with distribution_strategy "
                         f"{' or '.join(map(repr, _CLUSTER_STRATEGIES[name]))}, got {distribution_strategy!r}")
    if name == "tf_config":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("cluster_resolver='tf_config' but the TF_CONFIG environment variable is not set")
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if name == "slurm":
        return slurm_cluster_resolver(slurm_port_base, slurm_jobs)
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise _tpu_error(tpu_address, error) from error


def _describe_cluster(resolver) -> None:
    logging.info("Cluster from %s: %s; this task is %s:%s", type(resolver).__name__,
                 resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id)


def serve(cluster_resolver, inter_op_parallelism_threads: int | None = None, join: bool = True):
    """Runs this task's `tf.distribute.Server` (a 'worker' or 'ps' task of a parameter-server cluster).

    Args:
      cluster_resolver: the cluster (usually TFConfigClusterResolver over TF_CONFIG); its task_type and
        task_id name this task.
      inter_op_parallelism_threads: the server's inter-op thread pool; None means
        max(workers + 1, CPU count). Fewer than workers + 1 threads can deadlock the cluster (seen on
        2-core machines).
      join: serve until the process is killed (never returns); False returns the started server.
    """
    cluster_spec = cluster_resolver.cluster_spec()
    num_workers = len(cluster_spec.as_dict().get("worker", []))
    threads = inter_op_parallelism_threads or max(num_workers + 1, os.cpu_count() or 1)
    if threads < num_workers + 1:
        logging.warning("inter_op_parallelism_threads=%d < workers + 1 = %d: the cluster may hang", threads,
                        num_workers + 1)
    # The coordinator ships graphs that use our kernels (masking in the input pipeline, the MLM head):
    # this process must have them registered before it serves.
    from research.ops._loader import LIBRARY  # pylint: disable=import-outside-toplevel
    if LIBRARY.get() is None:
        logging.warning("The research ops library is not loaded (%s): graphs using its kernels will fail "
                        "on this task", LIBRARY.unavailable_reason)
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=threads)
    logging.info("Starting the tf.distribute.Server of %s:%d (inter_op_parallelism_threads=%d)",
                 cluster_resolver.task_type, cluster_resolver.task_id, threads)
    server = tf.distribute.Server(cluster_spec, job_name=cluster_resolver.task_type,
                                  task_index=cluster_resolver.task_id, protocol=cluster_resolver.rpc_layer or "grpc",
                                  config=config, start=True)
    if join:
        server.join()
    return server


class ParameterServerUnavailableError(RuntimeError):
    """A parameter server of a ParameterServerStrategy job was lost: the job cannot go on."""


@contextlib.contextmanager
def parameter_server_failures(strategy: tf.distribute.Strategy, model_dir: str):
    """Turns the loss of a parameter server into ParameterServerUnavailableError, saying what to do.

    The variables live on the parameter servers, so ClusterCoordinator cannot recover from losing one
    (a lost worker it can: its closures run elsewhere until it is back). The error names the task and
    the checkpoint that a restart of the cluster resumes from. Other errors pass unchanged.
    """
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as error:
        task = re.search(r"/job:ps/replica:\d+/task:\d+", str(error))
        if not isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy) or task is None:
            raise
        first_line = str(error).strip().splitlines()[0]
        latest = tf.train.latest_checkpoint(model_dir)
        raise ParameterServerUnavailableError(
            f"Parameter server {task.group(0)} is unreachable ({type(error).__name__}: {first_line}). Training "
            "cannot go on without it: ParameterServerStrategy keeps the variables there. Restart every task of "
            f"the cluster (parameter servers and workers, then the chief); training resumes from the last "
            f"checkpoint, {latest or f'none yet in {model_dir}: it starts over'}.") from error


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the task that writes model_dir: the only task without a cluster, the chief (or worker 0
    when the cluster has no chief) under MultiWorkerMirroredStrategy, the coordinator under
    ParameterServerStrategy."""
    return bool(strategy.extended.should_checkpoint)


def task_write_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this task writes checkpoints and summaries: model_dir on the chief, a fresh local temporary
    directory `workertemp_<task id>_*` on the other workers (Model Garden's pattern: every
    MultiWorkerMirroredStrategy worker must take part in saving, only the chief's copy is kept).
    The caller removes a temporary directory when done."""
    if is_chief(strategy):
        return model_dir
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", None)
    return tempfile.mkdtemp(prefix=f"workertemp_{task_id}_")


def get_distribution_strategy(distribution_strategy: str = "one_device", num_gpus: int = 0,
                              tpu_address: str | None = None, all_reduce_alg: str | None = None,
                              num_packs: int = 1, communication_timeout_seconds: float | None = None,
                              server_inter_op_threads: int | None = None, cluster_resolver=None,
                              slurm_port_base: int = 8888, slurm_jobs: dict | None = None,
                              **kwargs) -> tf.distribute.Strategy:
    """Returns a tf.distribute.Strategy by name.

    Args:
      distribution_strategy: one of
        'one_device': one device, GPU:0 when num_gpus == 1 else CPU:0;
        'mirrored': synchronous replicas on GPU:0..num_gpus-1 (CPU:0 when num_gpus == 0), or on the
          devices given as `devices=[...]` in kwargs (e.g. two logical CPUs);
        'multi_worker_mirrored': synchronous replicas across the workers of TF_CONFIG;
        'parameter_server': ParameterServerStrategy over the cluster of TF_CONFIG, on its 'chief' task
          (the coordinator). On its 'worker' and 'ps' tasks this starts the task's tf.distribute.Server
          and serves until the process is killed (it never returns): every task runs the same command;
        'tpu': TPUStrategy on the TPU at tpu_address;
        'off' or 'default': TensorFlow's default strategy (no distribution). Model Garden returns None
          for 'off'; the default strategy works everywhere a strategy does (`.scope()`, `.run`).
      num_gpus: number of GPUs for 'one_device' and 'mirrored'.
      tpu_address: the TPU's name or grpc:// address; '' or 'local' for a TPU on this host.
      all_reduce_alg: 'mirrored': None, 'nccl' or 'hierarchical_copy'; 'multi_worker_mirrored': None,
        'ring' or 'nccl'.
      num_packs: gradient packing for the mirrored all-reduce.
      communication_timeout_seconds: 'multi_worker_mirrored': a collective that does not complete in
        this time fails with DeadlineExceeded (a dead peer is otherwise found by the strategy's health
        check, within about a minute). Keep it well above the slowest step, first-step tracing included.
      server_inter_op_threads: 'parameter_server' worker and ps tasks: see `serve`.
      cluster_resolver: where 'multi_worker_mirrored', 'parameter_server' and 'tpu' find their
        cluster: 'tf_config' (the TF_CONFIG variable), 'slurm' (the variables srun sets, see
        `slurm_cluster_resolver`), 'tpu' (the TPU at tpu_address), or a ClusterResolver object. None:
        TF_CONFIG (a single local worker when it is not set) and, for 'tpu', the TPU at tpu_address.
      slurm_port_base, slurm_jobs: see `slurm_cluster_resolver`.
      **kwargs: passed to the strategy's constructor.

    Raises:
      ValueError: an unknown strategy name (the message lists the valid ones) or bad arguments.
      RuntimeError: 'tpu' and no TPU at tpu_address.
    """
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    if not isinstance(distribution_strategy, str):
        message = f"distribution_strategy must be a string, got {distribution_strategy!r}."
        if distribution_strategy is False:
            message += " To turn distribution off, pass the string 'off' (quoted)."
        raise ValueError(message)
    name = distribution_strategy.lower()
    logging.info("Distribution strategy: %s (num_gpus=%d)", name, num_gpus)
    if isinstance(cluster_resolver, str):
        cluster_resolver = make_cluster_resolver(cluster_resolver, name, tpu_address, slurm_port_base, slurm_jobs)
    elif cluster_resolver is not None and name not in ("multi_worker_mirrored", "parameter_server", "tpu"):
        raise ValueError(f"distribution_strategy={name!r} takes no cluster_resolver, got {cluster_resolver!r}")
    if name in ("off", "default"):
        if num_gpus > 1:
            raise ValueError(f"distribution_strategy={name!r} cannot use num_gpus={num_gpus} > 1")
        return tf.distribute.get_strategy()
    if name == "one_device":
        if num_gpus > 1:
            raise ValueError(f"one_device cannot use num_gpus={num_gpus} > 1: use 'mirrored'")
        return tf.distribute.OneDeviceStrategy("/device:GPU:0" if num_gpus == 1 else "/device:CPU:0")
    if name == "mirrored":
        devices = kwargs.pop("devices", None)
        if devices is None:
            devices = [f"/device:GPU:{i}" for i in range(num_gpus)] if num_gpus else ["/device:CPU:0"]
        return tf.distribute.MirroredStrategy(
            devices=devices, cross_device_ops=_mirrored_cross_device_ops(all_reduce_alg, num_packs), **kwargs)
    if name == "multi_worker_mirrored":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=_collective_communication(all_reduce_alg), timeout_seconds=communication_timeout_seconds)
        if cluster_resolver is not None:
            _describe_cluster(cluster_resolver)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options,
                                                             cluster_resolver=cluster_resolver, **kwargs)
        logging.info("MultiWorkerMirroredStrategy: %d replicas in sync", strategy.num_replicas_in_sync)
        return strategy
    if name == "parameter_server":
        resolver = cluster_resolver or tf.distribute.cluster_resolver.TFConfigClusterResolver()
        _describe_cluster(resolver)
        if resolver.task_type in ("worker", "ps"):
            serve(resolver, server_inter_op_threads)
        return tf.distribute.experimental.ParameterServerStrategy(resolver, **kwargs)
    if name == "tpu":
        return tf.distribute.TPUStrategy(tpu_initialize(tpu_address, cluster_resolver), **kwargs)
    raise ValueError(f"Unknown distribution_strategy {distribution_strategy!r}; valid names: {list(STRATEGIES)}")
