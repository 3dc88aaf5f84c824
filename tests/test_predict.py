"""Models out, end to end through the binaries: train a tiny classifier with research.main (its best model
also exported as a SavedModel), export it with --mode=export, and predict with research.predict from the
SavedModel and from the run directory, from another working directory."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.task_helpers import TINY_ENCODER_BINDINGS

REPO = Path(__file__).resolve().parents[1]
WORDS = {0: "dull boring awful sad bad".split(), 1: "great fun happy good sweet".split()}


def write_reviews(path, count=40):
    lines = [f"{i % 2}\t" + " ".join(WORDS[i % 2][(i + k) % 5] for k in range(3)) for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(module, *args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)  # hang guard only


@pytest.mark.slow
def test_train_export_and_predict(tmp_path, spm_model):
    reviews = write_reviews(tmp_path / "reviews.tsv")
    model_dir = tmp_path / "run"
    params = TINY_ENCODER_BINDINGS + [
        f"TRAIN_TSV = '{reviews}'", f"EVAL_TSV = '{reviews}'", f"SPM_MODEL = '{spm_model}'", "VOCAB_SIZE = 150",
        "INIT_CHECKPOINT = ''", "SEQ_LEN = 16", "GLOBAL_BATCH_SIZE = 4", "EVAL_BATCH_SIZE = 8", "TRAIN_STEPS = 4",
        "STEPS_PER_LOOP = 2", "VALIDATION_INTERVAL = 4", "WARMUP_STEPS = 1",
        "config_definitions.TrainerConfig.best_checkpoint_export_saved_model = True"]
    gin = [f"--gin_file={REPO / 'gin/experiments/demo_finetune.gin'}", f"--model_dir={model_dir}",
           *[f"--gin_param={p}" for p in params]]
    trained = run("research.main", *gin, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (model_dir / "best_ckpt" / "saved_model" / "saved_model.pb").exists()

    exported = run("research.main", *gin, "--mode=export", "--gin_param=saved_model.ExportConfig.checkpoint = 'best'",
                   cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert f"saved model:      {model_dir / 'saved_model'}" in exported.stdout
    info = json.loads((model_dir / "saved_model" / "assets.extra" / "export_info.json").read_text())
    assert info["kind"] == "classifier" and info["checkpoint"].startswith(str(model_dir / "best_ckpt"))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    from_saved = run("research.predict", "--model_dir=../run/saved_model", "--input=../reviews.tsv",
                     "--output=predictions.tsv", cwd=elsewhere)
    assert from_saved.returncode == 0, from_saved.stderr[-3000:]
    lines = (elsewhere / "predictions.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 40 and lines[0].split("\t")[0] in ("0", "1")
    assert float(lines[0].split("\t")[1]) + float(lines[0].split("\t")[2]) == pytest.approx(1.0, abs=1e-5)
    assert "40 texts" in from_saved.stdout and "accuracy against the file's labels" in from_saved.stdout

    from_run = run("research.predict", f"--model_dir={model_dir}", "--checkpoint=best", "--input=../reviews.tsv",
                   cwd=elsewhere)
    assert from_run.returncode == 0, from_run.stderr[-3000:]
    run_lines = from_run.stdout.splitlines()  # the run directory's model gives the SavedModel's predictions
    assert [line.split("\t")[0] for line in run_lines] == [line.split("\t")[0] for line in lines]
    for run_line, saved_line in zip(run_lines, lines):
        assert [float(p) for p in run_line.split("\t")[1:3]] == pytest.approx(
            [float(p) for p in saved_line.split("\t")[1:3]], abs=1e-5)


@pytest.mark.slow
def test_predict_refuses_bad_arguments(tmp_path):
    both = run("research.predict", f"--model_dir={tmp_path}", "--text=a", f"--input={tmp_path}/x.txt", cwd=tmp_path)
    assert both.returncode != 0 and "either --text" in both.stderr
    neither = run("research.predict", f"--model_dir={tmp_path}", "--text=a", cwd=tmp_path)
    assert neither.returncode != 0 and "neither a SavedModel" in neither.stderr
