"""benchmarks/finetune_time_to_accuracy.py --report_from: a saved run renders the same table, ratios included."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _report  # noqa: E402
import finetune_time_to_accuracy as bench  # noqa: E402


def _result(seconds_per_eval, accuracies, install):
    """A run's record as a child returns it: evaluations every 50 steps, training seconds accumulating."""
    curve = [{"step": 50 * (i + 1), "accuracy": a, "train_seconds": seconds_per_eval * (i + 1), "eval_seconds": 0.5}
             for i, a in enumerate(accuracies)]
    return {"curve": curve, "chunk_seconds": [seconds_per_eval] * len(accuracies), "eval_every": 50,
            "setup_seconds": 1.0, "research_install": install}


def _saved(with_settings):
    saved = {"prepared": {"differences": {"sequence_output": 2e-6, "pooled_output": 3e-7},
                          "records": {"counts": {"validation": 2014}}},
             "results": {"ours": [_result(1.0, [0.6, 0.71, 0.75], "abc")] * 2,
                         "mg": [_result(2.0, [0.5, 0.65, 0.72], None)] * 2}}
    if with_settings:
        saved.update(failures={"ours": 0, "mg": 1}, installs=["abc"],
                     settings={"runs": 2, "steps": 150, "eval_every": 50, "pretrained": "somewhere"})
    return saved


def _args(path, write_results=False):
    return SimpleNamespace(report_from=str(path), write_results=write_results, runs=1, steps=1500, eval_every=50,
                           pretrained_dir="", pretrain_steps=2000)


def test_renders_a_saved_run_with_its_settings(tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_saved(with_settings=True)))
    monkeypatch.setattr(_report, "RESULTS", tmp_path / "RESULTS.md")
    bench.report_from_json(_args(path, write_results=True))
    table = capsys.readouterr().out
    # ours reaches 0.70 after 2 s, Model Garden after 6 s: 3x
    assert "| ours (pad to batch) | 2/2 | 2.0 (2.0, 2.0) | 3200 |" in table and "| 3.00x |" in table
    assert "| Model Garden (seq 128) | 2/2, 1 failed | 6.0 (6.0, 6.0) |" in table
    written = (tmp_path / "RESULTS.md").read_text()
    assert "pretrained encoder: somewhere; 2 run(s) per side" in written and "150 steps of batch 32" in written


def test_a_run_saved_without_settings_takes_them_from_the_flags(tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_saved(with_settings=False)))
    monkeypatch.setattr(_report, "RESULTS", tmp_path / "RESULTS.md")
    bench.report_from_json(_args(path, write_results=True))
    assert "| Model Garden (seq 128) | 2/2 | 6.0 (6.0, 6.0) |" in capsys.readouterr().out
    written = (tmp_path / "RESULTS.md").read_text()
    assert "gin/experiments/demo_pretrain.gin, 2000 steps, seed 0; 1 run(s) per side" in written
