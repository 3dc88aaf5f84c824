"""benchmarks/matmul_ceiling.py: the products it times are the step's, and its FLOPs are train_bench.py's."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import matmul_ceiling  # noqa: E402
import train_bench  # noqa: E402


@pytest.mark.parametrize("qkv", matmul_ceiling.QKV_ARRANGEMENTS)
@pytest.mark.parametrize("config", sorted(train_bench.CONFIGS))
def test_products_add_up_to_the_flops_train_bench_counts(config, qkv):
    task, size = train_bench.CONFIGS[config]
    products = matmul_ceiling.step_products(task, size, qkv=qkv)
    assert matmul_ceiling.flops(products) == pytest.approx(train_bench.train_flops_per_step(task, size), rel=1e-12)


@pytest.mark.parametrize("qkv, weights_per_layer", [("separate", 6), ("fused", 4)])
def test_every_product_has_consistent_operands_and_three_per_weight(qkv, weights_per_layer):
    layers, hidden, heads, intermediate = train_bench.SIZES["small"]
    products = matmul_ceiling.step_products("mlm", "small", qkv=qkv)
    for count, m, k, n, transpose_a, transpose_b in products:
        a, b = matmul_ceiling.operand_shapes(count, m, k, n, transpose_a, transpose_b)
        assert (a[-1] if transpose_a else a[-2]) == m and (a[-2] if transpose_a else a[-1]) == k
        assert (b[-1] if transpose_b else b[-2]) == k and (b[-2] if transpose_b else b[-1]) == n
    # per layer: 6 weight matrices (4 with Q/K/V fused) x 3 products + 6 attention products; pooler, head
    # transform: 3 each; vocab: 3
    assert len(products) == layers * (weights_per_layer * 3 + 6) + 3 + 3 + 3
    fused_width = [(m, k, n) for _, m, k, n, transpose_a, transpose_b in products
                   if (k, n) == (hidden, 3 * hidden) and not transpose_a and not transpose_b]
    assert len(fused_width) == (layers if qkv == "fused" else 0)


def test_refuses_an_unknown_arrangement():
    with pytest.raises(ValueError, match="qkv must be one of"):
        matmul_ceiling.step_products("mlm", "small", qkv="packed")


def test_times_each_product_of_a_step_in_the_precision_asked(monkeypatch):
    """The timed function runs each product once, with its operand shapes, transposes and dtype; the
    durations are whatever the timer measured (a stub here: no timing in unit tests)."""
    import numpy as np
    import tensorflow as tf

    products = [(1, 8, 4, 6, False, False), (2, 5, 3, 7, True, True), (1, 8, 4, 6, False, False)]
    traced, runs = [], []
    matmul = tf.linalg.matmul

    def recording_matmul(a, b, transpose_a=False, transpose_b=False):
        traced.append((a.shape.as_list(), b.shape.as_list(), transpose_a, transpose_b, a.dtype.name, b.dtype.name))
        return matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)

    def stub_timer(run, repeats):
        runs.append(run())
        return [0.25] * repeats

    monkeypatch.setattr(tf.linalg, "matmul", recording_matmul)
    monkeypatch.setattr(matmul_ceiling._report, "time_runs", stub_timer)
    assert matmul_ceiling.time_products(products, "mixed_bfloat16", repeats=2) == [0.25, 0.25]
    assert traced == [([8, 4], [4, 6], False, False, "bfloat16", "bfloat16"),
                      ([2, 3, 5], [2, 7, 3], True, True, "bfloat16", "bfloat16"),
                      ([8, 4], [4, 6], False, False, "bfloat16", "bfloat16")]
    assert len(runs) == 1 and runs[0].shape == (4,) and np.isfinite(runs[0]).all()
