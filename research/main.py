"""The training binary: gin experiment files in, a trained, evaluated and checkpointed model out.

    python -m research.main --gin_file=gin/experiments/demo_pretrain.gin \\
        [--gin_file=...] [--gin_param='TRAIN_STEPS = 200'] [--mode=train_and_eval] [--model_dir=runs/x]
        [--distribution_strategy=multi_worker_mirrored] [--tpu_address=grpc://10.0.0.2:8470]

The gin files bind `launch.launch` (research/core/launch.py): the task class, the experiment config
(task, trainer schedule, runtime), the distribution strategy and, usually, `MODEL_DIR`. Gin is
parsed here and nowhere else; a bad file or binding fails before any work, naming the file, line and
binding.

Multi-worker and parameter-server jobs run this same binary in every task of the cluster, each with
its own `TF_CONFIG` (README.md, "Distributed training"). The strategy is created first thing in
`launch.launch`, before any other TensorFlow work; gin parsing itself runs no TensorFlow op.
"""
import json
import os

import gin
from absl import app, flags, logging

from research.core import distribute, launch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
_GIN_PARAM = flags.DEFINE_multi_string("gin_param", [], "Gin bindings applied after the files, e.g. 'X.y = 1'.")
_MODE = flags.DEFINE_enum("mode", None, list(launch.MODES), "Overrides the mode bound in gin.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Overrides the model_dir bound in gin.")
_DISTRIBUTION_STRATEGY = flags.DEFINE_enum(
    "distribution_strategy", None, list(distribute.STRATEGIES),
    "Overrides the strategy bound in gin (the binding DISTRIBUTION_STRATEGY = '...').")
_TPU_ADDRESS = flags.DEFINE_string("tpu_address", None,
                                   "The TPU for --distribution_strategy=tpu: a name, grpc://host:port, or 'local'.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only build the model and run it on one batch of each dataset.")
_DETERMINISTIC = flags.DEFINE_bool(
    "deterministic", False, "Seed Python, NumPy, Keras and TensorFlow with --seed and enable TensorFlow's "
    "deterministic ops: two runs of one configuration (or an interrupted and resumed run) end with bitwise "
    "equal weights on CPU. Slower; some ops raise instead of running nondeterministically.")
_SEED = flags.DEFINE_integer("seed", 0, "The global seed of --deterministic.")


def make_deterministic(seed: int) -> None:
    """Seeds every random generator (initializers, dropout) and enables TensorFlow's deterministic ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def parse_gin(gin_files, gin_params) -> None:
    """Parses the experiment; errors name the file, line and binding (gin adds them)."""
    if not gin_files:
        raise app.UsageError("--gin_file is required, e.g. --gin_file=gin/experiments/demo_pretrain.gin")
    for path in gin_files:
        if not os.path.exists(path):
            raise app.UsageError(f"--gin_file {path!r} does not exist")
    gin.add_config_file_search_path(REPO_ROOT)  # experiments `include 'gin/models/bert_tiny.gin'` from anywhere
    gin.parse_config_files_and_bindings(gin_files, gin_params, finalize_config=True)


def strategy_bindings(distribution_strategy: str | None, tpu_address: str | None) -> list[str]:
    """The gin bindings of --distribution_strategy and --tpu_address (the run gin files bind both names)."""
    bindings = []
    if distribution_strategy:
        bindings += [f"DISTRIBUTION_STRATEGY = {distribution_strategy!r}",
                     f"distribute.get_distribution_strategy.distribution_strategy = {distribution_strategy!r}"]
    if tpu_address is not None:
        bindings.append(f"distribute.get_distribution_strategy.tpu_address = {tpu_address!r}")
    return bindings


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    overrides = []  # flags win over the files, as bindings so that the operative config records them
    if _MODE.value:
        overrides.append(f"launch.launch.mode = {_MODE.value!r}")
    if _MODEL_DIR.value:
        overrides += [f"MODEL_DIR = {_MODEL_DIR.value!r}", f"launch.launch.model_dir = {_MODEL_DIR.value!r}"]
    overrides += strategy_bindings(_DISTRIBUTION_STRATEGY.value, _TPU_ADDRESS.value)
    parse_gin(_GIN_FILE.value, _GIN_PARAM.value + overrides)
    if _DETERMINISTIC.value:
        make_deterministic(_SEED.value)
    result = gin.get_configurable(launch.launch)(operative_config=gin.operative_config_str, dry_run=_DRY_RUN.value)
    if _DRY_RUN.value:
        print(f"dry run passed: {type(result.model).__name__} with {result.model.count_params()} parameters")
        return
    if result.export_dir:
        print(f"saved model:      {result.export_dir}")
        return
    model_dir = result.model_dir
    print(f"checkpoints:      {model_dir}")
    print(f"summaries:        {os.path.join(model_dir, 'train')} and {os.path.join(model_dir, 'eval')}")
    print(f"operative config: {os.path.join(model_dir, launch.OPERATIVE_CONFIG_NAME)}")
    if result.eval_logs:
        print("evaluation:       " + json.dumps({k: float(v) for k, v in result.eval_logs.items()}, sort_keys=True))
    logging.info("done")


if __name__ == "__main__":
    app.run(main)
