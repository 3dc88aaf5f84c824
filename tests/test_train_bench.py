"""benchmarks/train_bench.py's % of peak: against the highest peak measured, recomputed when it rises."""
import sys
from pathlib import Path

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
