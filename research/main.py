"""The training binary: gin experiment files in, a trained, evaluated and checkpointed model out.

    python -m research.main --gin_file=gin/experiments/demo_pretrain.gin \\
        [--gin_file=...] [--gin_param='TRAIN_STEPS = 200'] [--mode=train_and_eval] [--model_dir=runs/x]
        [--distribution_strategy=multi_worker_mirrored] [--cluster_resolver=slurm]
        [--tpu_address=grpc://10.0.0.2:8470]

The gin files bind `launch.launch` (research/core/launch.py): the task class, the experiment config
(task, trainer schedule, runtime), the distribution strategy and, usually, `MODEL_DIR`. Gin is
parsed here and nowhere else; a bad file or binding fails before any work, naming the file, line and
binding.

Multi-worker and parameter-server jobs run this same binary in every task of the cluster, each with
its own `TF_CONFIG`, or under `srun` with `--cluster_resolver=slurm` (README.md, "Distributed
training"). The strategy is created first thing in `launch.launch`, before any other TensorFlow work;
gin parsing itself runs no TensorFlow op.
"""
import difflib
import json
import logging as std_logging
import os
import re
import sys

import gin
from absl import app, flags, logging

from research import resources
from research.core import distribute, launch

_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [], "Gin files, applied in order: a path, or a shipped experiment's name (demo_pretrain).")
_GIN_PARAM = flags.DEFINE_multi_string("gin_param", [], "Gin bindings applied after the files, e.g. 'X.y = 1'.")
_MODE = flags.DEFINE_enum("mode", None, list(launch.MODES), "Overrides the mode bound in gin.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Overrides the model_dir bound in gin.")
_DISTRIBUTION_STRATEGY = flags.DEFINE_enum(
    "distribution_strategy", None, list(distribute.STRATEGIES),
    "Overrides the strategy bound in gin (the binding DISTRIBUTION_STRATEGY = '...').")
_TPU_ADDRESS = flags.DEFINE_string("tpu_address", None,
                                   "The TPU for --distribution_strategy=tpu: a name, grpc://host:port, or 'local'.")
_CLUSTER_RESOLVER = flags.DEFINE_enum(
    "cluster_resolver", None, list(distribute.CLUSTER_RESOLVERS),
    "Where multi_worker_mirrored / parameter_server / tpu find their cluster: 'tf_config' (the TF_CONFIG "
    "variable), 'slurm' (the variables srun sets: run `srun python -m research.main ...`), 'tpu' (the TPU "
    "at --tpu_address). Default: TF_CONFIG when it is set.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only build the model and run it on one batch of each dataset.")
_DETERMINISTIC = flags.DEFINE_bool(
    "deterministic", False, "Seed Python, NumPy, Keras and TensorFlow with --seed and enable TensorFlow's "
    "deterministic ops: two runs of one configuration (or an interrupted and resumed run) end with bitwise "
    "equal weights on CPU. Slower; some ops raise instead of running nondeterministically.")
_SEED = flags.DEFINE_integer("seed", 0, "The global seed of --deterministic.")


class UsageError(ValueError):
    """A bad command line or configuration; `main` prints only its message (no flag listing) and exits 2."""


def make_deterministic(seed: int) -> None:
    """Seeds every random generator (initializers, dropout) and enables TensorFlow's deterministic ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def parse_gin(gin_files, gin_params, overrides=()) -> None:
    """Parses the experiment; errors name the file, line and binding (gin adds them).

    Args:
      gin_files: --gin_file values (paths or shipped experiment names).
      gin_params: the user's --gin_param bindings; a macro among them that nothing reads is an error.
      overrides: bindings made from other flags (--model_dir, ...), applied last.
    """
    if not gin_files:
        raise UsageError("--gin_file is required, e.g. --gin_file=gin/experiments/demo_pretrain.gin")
    try:
        gin_files = [resources.resolve_gin_file(path) for path in gin_files]
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    # Experiments `include 'gin/models/bert_tiny.gin'`: found in the shipped files from any directory.
    gin.add_config_file_search_path(str(resources.resource_root()))
    root_logger = std_logging.getLogger()
    root_logger.addFilter(_quiet_include_lookups)
    try:
        gin.parse_config_files_and_bindings(gin_files, list(gin_params) + list(overrides), finalize_config=True)
    finally:
        root_logger.removeFilter(_quiet_include_lookups)
    check_macros_are_read(gin_params)


def _quiet_include_lookups(record: std_logging.LogRecord) -> bool:
    """Drops gin's "Path not found" errors for includes it then finds on the search path."""
    return not record.pathname.endswith(os.path.join("gin", "resource_reader.py"))


_MACRO_BINDING = re.compile(r"\s*([A-Za-z_]\w*)\s*=")  # `NAME = value`: a macro (no '.' in the name)


def _walk_references(value):
    """Yields every gin ConfigurableReference inside a bound value (lists, tuples, dicts nested)."""
    if isinstance(value, gin.config.ConfigurableReference):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk_references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_references(item)


def check_macros_are_read(gin_params) -> None:
    """Fails when a --gin_param binds a macro that no binding reads (a misspelt `TRAIN_STEP = 100`).

    Gin accepts any macro name, so a typo would otherwise run the whole experiment with the value it
    meant to change untouched. The error names the closest macro that the configuration does read.
    """
    defined, read = set(), set()
    for (scope, selector), bindings in gin.config._CONFIG.items():  # pylint: disable=protected-access
        if selector == "gin.macro":
            defined.add(scope)
        for value in bindings.values():
            for reference in _walk_references(value):
                name, _, target = reference.scoped_selector.rpartition("/")
                if target in ("gin.macro", "macro"):
                    read.add(name)
    for param in gin_params:
        match = _MACRO_BINDING.match(param)
        if not match or match.group(1) in read:
            continue
        name = match.group(1)
        closest = difflib.get_close_matches(name, sorted(read), n=1)
        hint = f"did you mean {closest[0]}? " if closest else ""
        raise UsageError(f"--gin_param {param!r} binds the macro {name}, which no configuration reads; {hint}"
                             f"the macros this experiment reads: {', '.join(sorted(read))}")


def strategy_bindings(distribution_strategy: str | None, tpu_address: str | None,
                      cluster_resolver: str | None = None) -> list[str]:
    """The gin bindings of --distribution_strategy, --tpu_address and --cluster_resolver (the run gin
    files bind DISTRIBUTION_STRATEGY)."""
    bindings = []
    if cluster_resolver:
        bindings.append(f"distribute.get_distribution_strategy.cluster_resolver = {cluster_resolver!r}")
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
    overrides += strategy_bindings(_DISTRIBUTION_STRATEGY.value, _TPU_ADDRESS.value, _CLUSTER_RESOLVER.value)
    try:
        parse_gin(_GIN_FILE.value, _GIN_PARAM.value, overrides)
    except UsageError as error:
        print(f"research.main: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if _DETERMINISTIC.value:
        make_deterministic(_SEED.value)
    try:
        result = gin.get_configurable(launch.launch)(operative_config=gin.operative_config_str,
                                                     dry_run=_DRY_RUN.value)
    except KeyboardInterrupt:  # before or after training (during it, Ctrl-C checkpoints and exits)
        logging.warning("Interrupted (Ctrl-C) outside the training loop: nothing new to save")
        raise SystemExit(130) from None
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
