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


MACHINE = {"date": "2026-01-02", "cpu": "Test CPU 9000", "cores": 64, "python": "3.11.0", "tensorflow": "2.20.0"}


def _saved(with_settings):
    saved = {"prepared": {"differences": {"sequence_output": 2e-6, "pooled_output": 3e-7},
                          "records": {"counts": {"validation": 2014}}},
             "results": {"ours": [_result(1.0, [0.6, 0.71, 0.75], "abc")] * 2,
                         "mg": [_result(2.0, [0.5, 0.65, 0.72], None)] * 2}}
    if with_settings:
        saved.update(failures={"ours": 0, "mg": 1}, installs=["abc"],
                     settings={"runs": 3, "steps": 150, "eval_every": 50, "pretrained": "somewhere"},
                     machine=MACHINE, command="python benchmarks/finetune_time_to_accuracy.py --runs 3 --steps 150")
    return saved


def _args(path, write_results=False):
    """The renderer's flags, all different from the saved run's: none of them may reach the report."""
    return SimpleNamespace(report_from=str(path), write_results=write_results, runs=1, steps=1500, eval_every=25,
                           pretrained_dir="", pretrain_steps=2000)


def test_renders_a_saved_run_with_its_settings_machine_and_command(tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_saved(with_settings=True)))
    monkeypatch.setattr(_report, "RESULTS", tmp_path / "RESULTS.md")
    bench.report_from_json(_args(path, write_results=True))
    table = capsys.readouterr().out
    # ours reaches 0.70 after 2 s, Model Garden after 6 s: 3x
    assert "| ours (pad to batch) | 2/2 | 2.0 (2.0, 2.0) | 3200 |" in table and "| 3.00x |" in table
    assert "| Model Garden (seq 128) | 2/2, 1 failed | 6.0 (6.0, 6.0) |" in table
    written = (tmp_path / "RESULTS.md").read_text()
    assert written.count("2026-01-02, Test CPU 9000, 64 cores, Python 3.11.0, TensorFlow 2.20.0;") == 1
    assert "measured by `python benchmarks/finetune_time_to_accuracy.py --runs 3 --steps 150`, rendered from " \
           "run.json with `--report_from`" in written
    assert "pretrained encoder: somewhere; 3 run(s) per side" in written and "150 steps of batch 32" in written
    assert "every 50 steps" in written and "1500" not in written and "every 25" not in written


def test_a_run_saved_without_settings_states_what_its_results_show_and_nothing_else(tmp_path, monkeypatch, capsys):
    """2 runs per side of 150 steps in the results: the report says so, not the renderer's 1 run and 1500
    steps, and says that the machine, date, command and pretrained encoder were not recorded."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_saved(with_settings=False)))
    monkeypatch.setattr(_report, "RESULTS", tmp_path / "RESULTS.md")
    bench.report_from_json(_args(path, write_results=True))
    assert "| Model Garden (seq 128) | 2/2 | 6.0 (6.0, 6.0) |" in capsys.readouterr().out
    written = (tmp_path / "RESULTS.md").read_text()
    assert "date and machine not recorded in the saved run; measuring command not recorded" in written
    assert "pretrained encoder: not recorded in the saved run; 2 run(s) per side" in written
    assert "150 steps of batch 32 (4800 examples)" in written and "every 50 steps" in written
    assert "1500" not in written and "2000 steps" not in written
    import datetime
    assert datetime.date.today().isoformat() not in written
