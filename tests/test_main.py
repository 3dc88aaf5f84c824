"""The training binary end to end in a subprocess: train, evaluate, checkpoint, summaries, restart."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.task_helpers import TINY_ENCODER_BINDINGS, write_pretraining_records

REPO = Path(__file__).resolve().parents[1]
TINY = TINY_ENCODER_BINDINGS + [
        "VOCAB_SIZE = 60", "SEQ_LEN = 16", "GLOBAL_BATCH_SIZE = 4", "EVAL_BATCH_SIZE = 8",
        "MAX_PREDICTIONS_PER_SEQ = 4", "WARMUP_STEPS = 2", "STEPS_PER_LOOP = 3", "VALIDATION_STEPS = 2"]


def run_main(model_dir, records, train_steps, *extra):
    params = TINY + [f"TRAIN_DATA = '{records}'", f"EVAL_DATA = '{records}'", f"TRAIN_STEPS = {train_steps}"]
    command = [sys.executable, "-m", "research.main", "--gin_file=gin/experiments/bert_base_pretrain.gin",
               f"--model_dir={model_dir}", *[f"--gin_param={p}" for p in params], *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_binary_trains_evaluates_checkpoints_and_resumes(tmp_path):
    records = write_pretraining_records(tmp_path / "records")
    model_dir = tmp_path / "run"
    first = run_main(model_dir, records, 6)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "masked_lm_accuracy" in first.stdout and f"checkpoints:      {model_dir}" in first.stdout
    assert (model_dir / "operative_config.gin").read_text().count("BertEncoder") > 0
    assert list((model_dir / "train").iterdir()) and list((model_dir / "eval").iterdir())
    assert (model_dir / "ckpt-6.index").exists()

    second = run_main(model_dir, records, 9)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "step: 9/9" in second.stderr and "step: 3/9" not in second.stderr  # resumed at 6, not from 0
    assert (model_dir / "ckpt-9.index").exists()


@pytest.mark.slow
def test_binary_refuses_a_bad_binding_before_any_work(tmp_path):
    records = write_pretraining_records(tmp_path / "records")
    result = run_main(tmp_path / "run", records, 3, "--gin_param=optimization.OptimizerConfig.typo = 1")
    assert result.returncode != 0
    assert "typo" in result.stderr
    assert not (tmp_path / "run").exists()
    misspelt = run_main(tmp_path / "run", records, 3, "--gin_param=TRAIN_STEP = 100")
    assert misspelt.returncode == 2 and "Traceback" not in misspelt.stderr, misspelt.stderr[-3000:]
    assert "research.main: error: --gin_param 'TRAIN_STEP = 100' binds the macro TRAIN_STEP" in misspelt.stderr
    assert "did you mean TRAIN_STEPS?" in misspelt.stderr and not (tmp_path / "run").exists()
