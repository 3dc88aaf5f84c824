"""benchmarks/step_profile.py: the trace arithmetic (the profiling run itself is exercised by hand)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import step_profile  # noqa: E402
from step_profile import Event  # noqa: E402


def test_merge_intervals_joins_overlapping_and_touching_ones():
    assert step_profile.merge_intervals([(5, 7), (0, 2), (1, 3), (3, 4), (9, 9)]) == [[0, 4], [5, 7], [9, 9]]
    assert step_profile.merge_intervals([]) == []


@pytest.mark.parametrize("start, end, expected", [(0, 10, 6), (1, 2, 1), (3, 5, 0), (2, 7, 2), (7, 30, 2)])
def test_covered_length(start, end, expected):
    merged = [[0, 3], [6, 8], [9, 10]]
    assert step_profile.covered_length(merged, start, end) == expected


def test_summarize_splits_products_from_the_rest_and_finds_exposed_time():
    ms = 10**9  # ps in a millisecond
    events = [
        Event(0, 10 * ms, "_MklMatMul", "a"),
        Event(5 * ms, 15 * ms, "_MklBatchMatMulV2", "b"),  # overlaps a: union 15, sum 20
        Event(12 * ms, 20 * ms, "Research>GeluGrad", "c"),  # 3 ms under b, 5 exposed
        Event(30 * ms, 34 * ms, "Research>GeluGrad", "d"),  # all exposed
        Event(2 * ms, 4 * ms, "AddN", "e"),  # hidden under a
    ]
    summary = step_profile.summarize(events, steps=2, wall_seconds=0.08)
    assert summary["wall_ms"] == pytest.approx(40.0)
    assert summary["product_union_ms"] == pytest.approx(7.5)
    assert summary["product_sum_ms"] == pytest.approx(10.0)
    assert summary["other_sum_ms"] == pytest.approx(7.0)
    assert summary["other_exposed_ms"] == pytest.approx(4.5)
    assert summary["by_type"]["Research>GeluGrad"] == pytest.approx({"total_ms": 6.0, "exposed_ms": 4.5})
    assert summary["by_type"]["AddN"] == pytest.approx({"total_ms": 1.0, "exposed_ms": 0.0})
    assert list(summary["by_type"])[0] == "Research>GeluGrad"  # largest total first
    report = step_profile.format_report(summary, "header", top=2)
    assert report.splitlines()[0] == "header"
    assert "Research>GeluGrad" in report and "AddN" not in report


def test_is_product_knows_onednn_renamed_ops():
    assert all(map(step_profile.is_product, ["MatMul", "_MklMatMul", "_MklNativeFusedMatMul", "BatchMatMulV2"]))
    assert not step_profile.is_product("Research>SoftmaxXentChunk")
