"""benchmarks/train_bench.py's % of peak (model and executed FLOPs, against the highest peak measured) and its
report of a saved run (the saved run's machine and command; typed-in peaks labelled)."""
import datetime
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import train_bench  # noqa: E402


def test_the_highest_peak_per_dtype_is_kept():
    peaks = train_bench.highest_peaks({}, {"float32": 250.0, "bfloat16": 700.0})
    peaks = train_bench.highest_peaks(peaks, {"float32": 380.0, "bfloat16": 450.0})
    assert peaks == {"float32": 380.0, "bfloat16": 700.0}
    assert train_bench.parse_peaks("float32=217,bfloat16=408") == {"float32": 217.0, "bfloat16": 408.0}
    assert train_bench.parse_peaks("") == {}


def test_peak_fractions_follow_the_peaks_they_are_set_against():
    task, size = train_bench.CONFIGS["mlm_small"]
    flops = train_bench.train_flops_per_step(task, size)
    median = 20.0
    row = {"config": "mlm_small", "precision": "float32", "ours": {"median": median}}
    train_bench.set_peak_fractions([row], {"float32": 200.0, "bfloat16": 400.0})
    low_peak_fraction = row["ours"]["peak_fraction"]
    assert low_peak_fraction == pytest.approx(median / train_bench.BATCH * flops / 200e9)
    train_bench.set_peak_fractions([row], {"float32": 400.0, "bfloat16": 400.0})
    assert row["ours"]["peak_fraction"] == pytest.approx(low_peak_fraction / 2)


def test_executed_flops_skip_the_last_layer_outside_the_rows_read():
    """The docstring's fractions: MLM small 13%, base 5%; classifier small 19%, base 6% fewer."""
    for config, skipped in (("mlm_small", 0.13), ("mlm_base", 0.05), ("cls_small", 0.19)):
        task, size = train_bench.CONFIGS[config]
        fraction = 1 - train_bench.ours_executed_flops_per_step(task, size) / train_bench.train_flops_per_step(task, size)
        assert fraction == pytest.approx(skipped, abs=0.006), config


def _saved_run(tmp_path, **extra):
    row = {"config": "mlm_small", "precision": "float32", "ours": {"min": 19.0, "median": 20.0, "rss_mb": 900.0},
           "mg": {"min": 14.0, "median": 15.0, "rss_mb": 1200.0}, "speed_ratio": 20 / 15, "rss_ratio": 0.75}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"peaks": {"float32": 200.0, "bfloat16": 400.0}, "rows": [row], **extra}))
    return path


def test_report_from_states_the_saved_machine_and_labels_a_typed_in_peak(tmp_path, monkeypatch, capsys):
    machine = {"date": "2026-01-02", "cpu": "Test CPU 9000", "cores": 64, "python": "3.11.0", "tensorflow": "2.20.0"}
    path = _saved_run(tmp_path, machine=machine, command="python benchmarks/train_bench.py --configs mlm_small",
                      peak_sources={"float32": train_bench.MEASURED, "bfloat16": train_bench.MEASURED})
    monkeypatch.setattr(train_bench._report, "RESULTS", tmp_path / "RESULTS.md")
    train_bench.report_from_json(SimpleNamespace(report_from=str(path), peak_gflops="bfloat16=500",
                                                 write_results=True))
    written = (tmp_path / "RESULTS.md").read_text()
    assert ("run.json: 2026-01-02, Test CPU 9000, 64 cores, Python 3.11.0, TensorFlow 2.20.0; "
            "`python benchmarks/train_bench.py --configs mlm_small`") in written
    assert datetime.date.today().isoformat() not in written
    assert ("matmul peak: float32 200 GFLOP/s (measured: 2048^3 matmuls, highest of the run), bfloat16 500 GFLOP/s "
            "(typed in with --peak_gflops, not measured (given when rendering))") in written
    task, size = train_bench.CONFIGS["mlm_small"]
    model = 20.0 / train_bench.BATCH * train_bench.train_flops_per_step(task, size) / 200e9
    executed = 20.0 / train_bench.BATCH * train_bench.ours_executed_flops_per_step(task, size) / 200e9
    mg = 15.0 / train_bench.BATCH * train_bench.train_flops_per_step(task, size) / 200e9
    assert f"| 1.33x | 900 | 1200 | 0.75x | {100 * model:.0f}% | {100 * executed:.0f}% | {100 * mg:.0f}% |" in written
    assert f"{100 * model:.0f}%" != f"{100 * executed:.0f}%"


def test_report_from_a_run_saved_without_machine_or_peak_sources_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(train_bench._report, "RESULTS", tmp_path / "RESULTS.md")
    train_bench.report_from_json(SimpleNamespace(report_from=str(_saved_run(tmp_path)), peak_gflops="",
                                                 write_results=True))
    written = (tmp_path / "RESULTS.md").read_text()
    assert "run.json: date and machine not recorded in the saved run; command not recorded" in written
    assert "float32 200 GFLOP/s (source not recorded in the saved run)" in written
    assert datetime.date.today().isoformat() not in written
