"""A subprocess harness for localhost clusters: free ports, one TF_CONFIG per task, hard timeouts.

TensorFlow's `multi_process_runner` does not work under pytest here, so each task of a cluster is a
plain `python -m research.main ...` subprocess with its own `TF_CONFIG`. `Cluster` starts them, waits
with a deadline, and kills whatever is still running when it exits (also on test failure).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parents[2]

# The tiny BERT of tests/test_main.py, without dropout (replicas and processes must compute the same
# thing), seeded, every loss and checkpoint written each STEPS_PER_LOOP steps.
TINY = ["modeling.BertEncoder.hidden_size = 16", "modeling.BertEncoder.num_layers = 1",
        "modeling.BertEncoder.num_attention_heads = 2", "modeling.BertEncoder.intermediate_size = 32",
        "modeling.BertEncoder.hidden_dropout_rate = 0.0", "modeling.BertEncoder.attention_dropout_rate = 0.0",
        "VOCAB_SIZE = 60", "SEQ_LEN = 16", "GLOBAL_BATCH_SIZE = 4", "EVAL_BATCH_SIZE = 4",
        "WARMUP_STEPS = 2", "STEPS_PER_LOOP = 2", "VALIDATION_STEPS = 2", "launch.launch.seed = 1"]

# Data whose global batches do not depend on how they are split (see write_split_invariant_records).
SEQUENCE_LENGTH = 12  # tokens, [CLS] and [SEP] included: 10 candidates
SPLIT_INVARIANT = ["MAX_PREDICTIONS_PER_SEQ = 10", "masked_lm.PretrainDataConfig.mask_rate = 1.0",
                   "masked_lm.PretrainDataConfig.mask_prob = 0.0", "masked_lm.PretrainDataConfig.random_prob = 0.0",
                   "masked_lm.PretrainDataConfig.shuffle_buffer_size = 1"]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free a moment ago (bound together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("localhost", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def consecutive_free_ports(count: int, attempts: int = 50) -> int:
    """A port p such that p .. p + count - 1 were all free a moment ago (Slurm's resolver numbers the
    tasks of a node from one base port)."""
    for _ in range(attempts):
        base = free_ports(1)[0]
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("localhost", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports found in {attempts} attempts")


def slurm_environment(proc_id: int, num_tasks: int) -> dict:
    """The variables srun sets in task `proc_id` of a one-node job step of `num_tasks` tasks on localhost
    (SlurmClusterResolver reads SLURM_PROCID and the SLURM_STEP_* ones; the rest make it realistic)."""
    return {"SLURM_PROCID": str(proc_id), "SLURM_LOCALID": str(proc_id), "SLURM_NODEID": "0",
            "SLURM_STEP_NUM_TASKS": str(num_tasks), "SLURM_NTASKS": str(num_tasks), "SLURM_NPROCS": str(num_tasks),
            "SLURM_STEP_NODELIST": "localhost", "SLURM_JOB_NODELIST": "localhost", "SLURM_NODELIST": "localhost",
            "SLURM_STEP_NUM_NODES": "1", "SLURM_NNODES": "1", "SLURM_STEP_TASKS_PER_NODE": str(num_tasks),
            "SLURM_TASKS_PER_NODE": str(num_tasks), "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0",
            "SLURM_STEPID": "0", "SLURMD_NODENAME": "localhost"}


def cluster_spec(**num_tasks: int) -> dict:
    """{'worker': ['localhost:p1', ...], 'ps': [...], ...} on free ports, e.g. cluster_spec(worker=2, ps=1)."""
    ports = iter(free_ports(sum(num_tasks.values())))
    return {job: [f"localhost:{next(ports)}" for _ in range(count)] for job, count in num_tasks.items() if count}


def tf_config(cluster: dict, task_type: str, task_id: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": task_id}})


def write_split_invariant_records(directory: Path, num_shards: int = 2, per_shard: int = 8) -> str:
    """Shards whose batches are the same whichever way the global batch is split.

    Shard k holds `per_shard` copies of one sequence S_k (distinct ids, all of SEQUENCE_LENGTH tokens).
    With SPLIT_INVARIANT (every candidate predicted, kept unchanged, so masking is deterministic and the
    masked-LM weights are the same for every example; no record shuffle), one pipeline reading all
    shards interleaves S_0, S_1, S_0, S_1, ..., and N pipelines reading one shard each give S_k only:
    a global batch of 4 is {S_0, S_0, S_1, S_1} on 1 device, on 2 replicas of one pipeline and on 2
    workers alike. The loss of a global batch is then the mean of equal-weight replica losses, so every
    strategy must give the one-device losses up to float summation order.
    """
    rng = np.random.RandomState(7)
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(num_shards):
        ids = [2] + list(rng.randint(5, 60, size=SEQUENCE_LENGTH - 2)) + [3] + [0] * (16 - SEQUENCE_LENGTH)
        example = tf.train.Example(features=tf.train.Features(feature={
            "input_word_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
            "input_type_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[0] * 16))}))
        with tf.io.TFRecordWriter(str(directory / f"train-{shard:05d}-of-{num_shards:05d}.tfrecord")) as writer:
            for _ in range(per_shard):
                writer.write(example.SerializeToString())
    return str(directory / "train-*.tfrecord")


def write_sequences(path: Path, sequences) -> str:
    """One TFRecord file of pretraining records holding `sequences` (id lists, padded to 16); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for ids in sequences:
            ids = list(ids) + [0] * (16 - len(ids))
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "input_word_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
                "input_type_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[0] * 16))}))
                         .SerializeToString())
    return str(path)


def random_sequences(count: int, seed: int) -> list[list[int]]:
    """`count` sequences of SEQUENCE_LENGTH tokens: [CLS], random ids in [5, 60), [SEP]."""
    rng = np.random.RandomState(seed)
    return [[2] + list(rng.randint(5, 60, size=SEQUENCE_LENGTH - 2)) + [3] for _ in range(count)]


def demo_command(model_dir, train_records, eval_records, train_steps: int, *params: str, flags=()) -> list[str]:
    """`python -m research.main` on gin/experiments/demo_pretrain.gin in its default mode
    (train_and_eval, the whole validation set), with a tiny encoder and the given records."""
    bindings = ["modeling.BertEncoder.hidden_size = 16", "modeling.BertEncoder.num_layers = 1",
                "modeling.BertEncoder.num_attention_heads = 2", "modeling.BertEncoder.intermediate_size = 32",
                "VOCAB_SIZE = 60", "SEQ_LEN = 16", "GLOBAL_BATCH_SIZE = 4", "EVAL_BATCH_SIZE = 4",
                "WARMUP_STEPS = 2", "STEPS_PER_LOOP = 2", "launch.launch.seed = 1",
                "SPM_MODEL = ''",  # the records are made up: not the demo tokenizer's
                f"TRAIN_DATA = '{train_records}'", f"EVAL_DATA = '{eval_records}'", f"TRAIN_STEPS = {train_steps}",
                *params]
    return [sys.executable, "-m", "research.main", "--gin_file=gin/experiments/demo_pretrain.gin",
            f"--model_dir={model_dir}", *[f"--gin_param={b}" for b in bindings], *flags]


def main_command(model_dir, records, train_steps: int, *params: str, flags=(), eval_records=None) -> list[str]:
    """`python -m research.main` on the bert_base experiment shrunk by TINY, with extra gin params."""
    bindings = TINY + [f"TRAIN_DATA = '{records}'", f"EVAL_DATA = '{eval_records or records}'",
                       f"TRAIN_STEPS = {train_steps}", *params]
    return [sys.executable, "-m", "research.main", "--gin_file=gin/experiments/bert_base_pretrain.gin",
            f"--model_dir={model_dir}", *[f"--gin_param={b}" for b in bindings], *flags]


def environment(tf_config_json: str | None = None, **extra: str) -> dict:
    """The subprocess environment: ours without TF_CONFIG, then `tf_config_json` and `extra` variables."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    for name in [name for name in env if name == "TF_CONFIG" or name.startswith("SLURM")]:
        del env[name]
    if tf_config_json:
        env["TF_CONFIG"] = tf_config_json
    env.update(extra)
    return env


class Task:
    """One subprocess; its stdout and stderr go to files under `log_dir`."""

    def __init__(self, name: str, command: list[str], env: dict, log_dir: Path):
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err,
                                            start_new_session=True)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def poll(self):
        return self.process.poll()

    def kill(self, sig=signal.SIGKILL):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)

    def describe(self) -> str:
        return f"--- {self.name} (exit {self.process.poll()}) stderr tail:\n{self.stderr[-2500:]}"


class Cluster:
    """Starts tasks, waits for some of them with a hard deadline, kills them all on exit."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.tasks: dict[str, Task] = {}

    def start(self, name: str, command: list[str], tf_config_json: str | None = None, **env: str) -> Task:
        """Starts `command` as task `name`; `env` adds environment variables (e.g. TMPDIR)."""
        self.tasks[name] = Task(name, command, environment(tf_config_json, **env), self.log_dir)
        return self.tasks[name]

    def wait(self, names, timeout: float) -> dict[str, int]:
        """Exit codes of `names`; kills everything and raises TimeoutError past `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            codes = {name: self.tasks[name].poll() for name in names}
            if all(code is not None for code in codes.values()):
                return codes
            if time.monotonic() > deadline:
                report = self.report()
                self.kill_all()
                raise TimeoutError(f"{[n for n, c in codes.items() if c is None]} still running after "
                                   f"{timeout:.0f} s\n{report}")
            time.sleep(0.2)

    def wait_for_output(self, name: str, text: str, timeout: float, stream: str = "stderr") -> None:
        deadline = time.monotonic() + timeout
        task = self.tasks[name]
        while text not in getattr(task, stream):
            if task.poll() is not None or time.monotonic() > deadline:
                report = self.report()
                self.kill_all()
                raise TimeoutError(f"{name} never printed {text!r} within {timeout:.0f} s\n{report}")
            time.sleep(0.2)

    def report(self) -> str:
        return "\n".join(task.describe() for task in self.tasks.values())

    def kill_all(self):
        for task in self.tasks.values():
            task.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill_all()
        return False


def run(command: list[str], log_dir: Path, name: str = "single", timeout: float = 100) -> Task:
    """Runs one process to completion (no TF_CONFIG); raises on timeout, returns the Task."""
    with Cluster(log_dir) as cluster:
        task = cluster.start(name, command)
        cluster.wait([name], timeout)
    return task


def train_losses(stderr: str) -> dict[int, float]:
    """{step: training loss} from the run loop's log lines 'train | step: 4/6 | loss: 3.1 | ...'."""
    losses = {}
    for line in stderr.splitlines():
        if "train | step: " in line:
            step = int(line.split("train | step: ")[1].split("/")[0])
            losses[step] = float(line.split("| loss: ")[1].split(" ")[0])
    return losses


def evaluation(stdout: str) -> dict:
    """The evaluation logs that research.main prints."""
    lines = [line for line in stdout.splitlines() if line.startswith("evaluation:")]
    return json.loads(lines[-1].split(":", 1)[1]) if lines else {}
