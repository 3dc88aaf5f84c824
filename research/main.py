"""The training binary: gin experiment files in, a trained, evaluated and checkpointed model out.

    python -m research.main --gin_file=gin/experiments/demo_pretrain.gin \\
        [--gin_file=...] [--gin_param='TRAIN_STEPS = 200'] [--mode=train_and_eval] [--model_dir=runs/x]

The gin files bind `launch.launch` (research/core/launch.py): the task class, the experiment config
(task, trainer schedule, runtime), the distribution strategy and, usually, `MODEL_DIR`. Gin is
parsed here and nowhere else; a bad file or binding fails before any work, naming the file, line and
binding.
"""
import json
import os

import gin
from absl import app, flags, logging

from research.core import launch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
_GIN_PARAM = flags.DEFINE_multi_string("gin_param", [], "Gin bindings applied after the files, e.g. 'X.y = 1'.")
_MODE = flags.DEFINE_enum("mode", None, list(launch.MODES), "Overrides the mode bound in gin.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Overrides the model_dir bound in gin.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only build the model and run it on one batch of each dataset.")


def parse_gin(gin_files, gin_params) -> None:
    """Parses the experiment; errors name the file, line and binding (gin adds them)."""
    if not gin_files:
        raise app.UsageError("--gin_file is required, e.g. --gin_file=gin/experiments/demo_pretrain.gin")
    for path in gin_files:
        if not os.path.exists(path):
            raise app.UsageError(f"--gin_file {path!r} does not exist")
    gin.add_config_file_search_path(REPO_ROOT)  # experiments `include 'gin/models/bert_tiny.gin'` from anywhere
    gin.parse_config_files_and_bindings(gin_files, gin_params, finalize_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    overrides = []  # flags win over the files, as bindings so that the operative config records them
    if _MODE.value:
        overrides.append(f"launch.launch.mode = {_MODE.value!r}")
    if _MODEL_DIR.value:
        overrides += [f"MODEL_DIR = {_MODEL_DIR.value!r}", f"launch.launch.model_dir = {_MODEL_DIR.value!r}"]
    parse_gin(_GIN_FILE.value, _GIN_PARAM.value + overrides)
    result = gin.get_configurable(launch.launch)(operative_config=gin.operative_config_str, dry_run=_DRY_RUN.value)
    if _DRY_RUN.value:
        print(f"dry run passed: {type(result.model).__name__} with {result.model.count_params()} parameters")
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
