"""benchmarks/wordpiece_bench.py runs its tokenizers (the in-graph one batched by --graph_batch) and reports that
their ids equal ours."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_in_graph_row_is_timed_and_equal_to_ours(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "wordpiece_bench.py"), "--rounds=1",
                                "--lines=50", "--graph_batch=16"], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=600)  # hang guard only
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith("ours in graph")]
    assert len(rows) == 1 and rows[0].endswith("all lines"), completed.stdout
    assert "50 lines of third_party/austen/austen.txt" in completed.stdout
