"""The binary as a user runs it: relative directories, from another working directory, resumed and evaluated.

Every other end-to-end test passes absolute temporary directories; these run `python -m research.main`
with the working directory set to a fresh directory, a shipped experiment named by its bare name, and
relative `--model_dir` / `INIT_CHECKPOINT`, as the README's own commands do.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks.task_helpers import TINY_ENCODER_BINDINGS, write_pretraining_records

TINY = TINY_ENCODER_BINDINGS + [
    "SEQ_LEN = 16", "GLOBAL_BATCH_SIZE = 4", "EVAL_BATCH_SIZE = 8", "MAX_PREDICTIONS_PER_SEQ = 4",
    "WARMUP_STEPS = 2", "STEPS_PER_LOOP = 3", "VALIDATION_STEPS = 2"]


def run_main(cwd, gin_file, params, *flags, timeout=300):
    command = [sys.executable, "-m", "research.main", f"--gin_file={gin_file}",
               *[f"--gin_param={p}" for p in params], *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_relative_model_dir_resumes_and_evaluates_from_another_directory(tmp_path, spm_model):
    work = tmp_path / "work"
    records = write_pretraining_records(work / "records")
    params = TINY + ["VOCAB_SIZE = 150", "TRAIN_DATA = 'records/train-*'", "EVAL_DATA = 'records/train-*'"]
    first = run_main(work, "bert_base_pretrain", params + ["TRAIN_STEPS = 3"], "--model_dir=runs/pre")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"checkpoints:      {work / 'runs' / 'pre'}" in first.stdout
    assert (work / "runs" / "pre" / "ckpt-3.index").exists() and records

    resumed = run_main(work, "bert_base_pretrain", params + ["TRAIN_STEPS = 6"], "--model_dir=runs/pre")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored" in resumed.stderr and "ckpt-3" in resumed.stderr
    assert "step: 6/6" in resumed.stderr and "step: 3/6" not in resumed.stderr

    evaluated = run_main(work, "bert_base_pretrain", params + ["TRAIN_STEPS = 6"], "--model_dir=runs/pre",
                         "--mode=eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "masked_lm_accuracy" in evaluated.stdout

    tsv = work / "reviews.tsv"
    tsv.write_text("".join(f"{i % 2}\t{'good fun sweet' if i % 2 else 'bad dull sour'} story {i}\n"
                           for i in range(40)), encoding="utf-8")
    finetune = TINY_ENCODER_BINDINGS + [
        "VOCAB_SIZE = 150", f"SPM_MODEL = '{spm_model}'", "TRAIN_TSV = 'reviews.tsv'", "EVAL_TSV = 'reviews.tsv'",
        "INIT_CHECKPOINT = 'runs/pre'", "TRAIN_STEPS = 4", "STEPS_PER_LOOP = 2", "VALIDATION_INTERVAL = 4",
        "WARMUP_STEPS = 1", "GLOBAL_BATCH_SIZE = 8", "SEQ_LEN = 16"]
    tuned = run_main(work, "demo_finetune.gin", finetune, "--model_dir=runs/tuned")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert re.search(r"Restored \[.*'encoder'.*\] from \S*" + re.escape(str(Path("runs") / "pre" / "ckpt-6")), tuned.stderr)
    assert (work / "runs" / "tuned" / "ckpt-4.index").exists()


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once_without_a_checkpoint(tmp_path):
    records = write_pretraining_records(tmp_path / "records")
    params = TINY + ["VOCAB_SIZE = 60", f"TRAIN_DATA = '{records}'", f"EVAL_DATA = '{records}'",
                     "TRAIN_STEPS = 1000000", "STEPS_PER_LOOP = 1000000"]  # one loop that would take hours
    command = [sys.executable, "-m", "research.main", "--gin_file=bert_base_pretrain", "--mode=train",
               f"--model_dir={tmp_path / 'run'}", *[f"--gin_param={p}" for p in params]]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()

    def wait_for(text, hang_guard=240.0):  # a generous hang guard, not a speed requirement
        deadline = time.monotonic() + hang_guard
        while not any(text in line for line in list(lines)):
            assert process.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, f"no {text!r} after {hang_guard} s: " + "".join(lines)[-3000:]
            time.sleep(0.2)

    try:
        wait_for("Training from step 0")
        time.sleep(2.0)  # inside the loop's TensorFlow call
        process.send_signal(signal.SIGINT)
        wait_for("Received SIGINT: saving a checkpoint at the end of this loop")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)  # hang guard: the loop under way would run for hours
    finally:
        process.kill()
    reader.join(timeout=10)
    assert process.returncode == 130, "".join(lines)[-3000:]
    assert any("second Ctrl-C: exiting now" in line for line in lines)
    assert not list((tmp_path / "run").glob("ckpt-*"))
