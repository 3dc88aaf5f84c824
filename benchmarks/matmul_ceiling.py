"""The fastest a training step could run if it were nothing but its matrix products.

    python benchmarks/matmul_ceiling.py [--configs mlm_small,mlm_base] [--precisions float32,mixed_bfloat16]
                                        [--qkv separate,fused] [--repeats 5] [--write_results]

For each configuration of train_bench.py (batch 32, sequence 128, vocabulary 30522, 20 predictions),
this runs every matrix product of one training step, forward and backward, at the shape it has in the
step, one after another in one tf.function and with nothing else: per layer the Q, K, V, output and
two feed-forward products with their input and weight gradients (x W, dY W^T, X^T dY), the attention
scores and context as batched products over batch x heads with their four gradients, the pooler, and
the masked-LM head's transform and vocabulary products (or the classifier's output layer). Under
mixed_bfloat16 the operands are bfloat16, as the model's are. Their FLOPs add up to exactly what
train_bench.py counts for the step (checked). The Q, K and V projections are timed in both arrangements a
model may give them (`--qkv`): three [hidden, hidden] products, as Model Garden's attention has, and one
[hidden, 3 hidden] product, as ours has; the faster one is the ceiling.

Reported: the products' time per step (best and median of `repeats`), their GFLOP/s as a fraction of
the 2048^3 matmul peak (benchmarks/peak_flops.py; measured in the same process before every
configuration, the best measurement of each dtype used for all rows), and the
examples/s of a step made of nothing else. A real step also runs layer norms, softmaxes, GELU,
dropout, embedding gathers and the optimizer, and its products cannot run faster than they do alone,
so no training step that runs all of these products can reach a larger fraction of the peak than this
ceiling: it is the bound against which train_bench.py's "% of peak" figures are to be read. Ours skips
the last layer's rows that nothing reads (train_bench.py's docstring gives the fraction), so its model
FLOP/s may exceed the ceiling by up to that fraction.
"""
import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _report, peak_flops, train_bench

import _report  # noqa: E402
import peak_flops  # noqa: E402
import train_bench  # noqa: E402

TITLE = "Matmul-only ceiling (benchmarks/matmul_ceiling.py)"


QKV_ARRANGEMENTS = ("separate", "fused")


def step_products(task: str, size: str, batch: int = train_bench.BATCH, seq_len: int = train_bench.SEQ_LEN,
                  vocab: int = train_bench.VOCAB, num_predictions: int = train_bench.NUM_PREDICTIONS,
                  qkv: str = "separate"):
    """The products of one training step as (batch_count, m, k, n, transpose_a, transpose_b): C = op(A) op(B)
    with op(A) [m, k] and op(B) [k, n], `batch_count` independent ones (a batched product). `qkv`:
    'separate' projects Q, K and V with three [hidden, hidden] products, 'fused' with one [hidden, 3 hidden]."""
    if qkv not in QKV_ARRANGEMENTS:
        raise ValueError(f"qkv must be one of {QKV_ARRANGEMENTS}, got {qkv!r}")
    layers, hidden, heads, intermediate = train_bench.SIZES[size]
    tokens, head_width = batch * seq_len, hidden // heads

    def dense(m, k, n):  # y = x W, dX = dY W^T, dW = X^T dY
        return [(1, m, k, n, False, False), (1, m, n, k, False, True), (1, k, m, n, True, False)]

    projections = [(hidden, hidden)] * 3 if qkv == "separate" else [(hidden, 3 * hidden)]
    weights = projections + [(hidden, hidden), (hidden, intermediate), (intermediate, hidden)]
    products = []
    for _ in range(layers):
        for k, n in weights:
            products += dense(tokens, k, n)
        bh = batch * heads
        products += [
            (bh, seq_len, head_width, seq_len, False, True),  # scores = Q K^T
            (bh, seq_len, seq_len, head_width, False, False),  # dQ = dS K
            (bh, seq_len, seq_len, head_width, True, False),  # dK = dS^T Q
            (bh, seq_len, seq_len, head_width, False, False),  # context = P V
            (bh, seq_len, head_width, seq_len, False, True),  # dP = dC V^T
            (bh, seq_len, seq_len, head_width, True, False),  # dV = P^T dC
        ]
    products += dense(batch, hidden, hidden)  # the pooler
    if task == "mlm":
        positions = batch * num_predictions
        products += dense(positions, hidden, hidden)  # the head's transform
        products += [(1, positions, hidden, vocab, False, True),  # logits = H E^T
                     (1, positions, vocab, hidden, False, False),  # dH = dL E
                     (1, vocab, positions, hidden, True, False)]  # dE = dL^T H
    else:
        products += dense(batch, hidden, 2)
    return products


def flops(products) -> float:
    return sum(2.0 * count * m * k * n for count, m, k, n, _, _ in products)


def operand_shapes(count, m, k, n, transpose_a, transpose_b):
    a = [k, m] if transpose_a else [m, k]
    b = [n, k] if transpose_b else [k, n]
    return ([count] + a, [count] + b) if count > 1 else (a, b)


def time_products(products, precision: str, repeats: int):
    """Seconds per step of the products alone, one after another, over `repeats` timed calls."""
    import tensorflow as tf

    dtype = tf.as_dtype(peak_flops_dtype(precision))
    operands = {}  # one pair of random operands per distinct shape
    for product in products:
        if product not in operands:
            a_shape, b_shape = operand_shapes(*product)
            operands[product] = [tf.cast(tf.random.stateless_normal(shape, seed=[len(operands), i]), dtype)
                                 for i, shape in enumerate((a_shape, b_shape))]

    @tf.function
    def step():
        corners = [tf.constant(0.0)]  # one element of each product, all returned: none can be pruned
        for product in products:
            a, b = operands[product]
            with tf.control_dependencies(corners[-1:]):  # one product at a time, each with every core
                c = tf.linalg.matmul(a, b, transpose_a=product[4], transpose_b=product[5])
            corners.append(tf.cast(tf.reshape(c, [-1])[-1], tf.float32))
        return tf.stack(corners)

    return _report.time_runs(lambda: step().numpy(), repeats)


def measure(configs, precisions, repeats, arrangements=QKV_ARRANGEMENTS):
    """One row per (precision, configuration, Q/K/V arrangement). The peak is measured again before every
    configuration and the best measurement of each dtype is used for every row: the peak is the machine's,
    and a noisy host only ever measures it too low (which would inflate the fractions)."""
    rows, peaks = [], {}
    for precision in precisions:
        for config in configs:
            peaks.setdefault(precision, []).append(peak_flops.measure(peak_flops_dtype(precision)))
            task, size = train_bench.CONFIGS[config]
            counted = train_bench.train_flops_per_step(task, size)
            for qkv in arrangements:
                products = step_products(task, size, qkv=qkv)
                assert abs(flops(products) - counted) <= 1e-9 * counted, (config, qkv, flops(products), counted)
                durations = time_products(products, precision, repeats)
                rows.append({"config": config, "precision": precision, "qkv": qkv, "products": len(products),
                             "best_s": min(durations), "median_s": statistics.median(durations),
                             "gflops": counted / min(durations) / 1e9,
                             "examples_per_s": train_bench.BATCH / min(durations)})
                print(f"{config:10s} {precision:15s} Q/K/V {qkv:8s} {len(products):4d} products  best "
                      f"{rows[-1]['best_s']:.3f} s  median {rows[-1]['median_s']:.3f} s  {rows[-1]['gflops']:6.0f} "
                      f"GFLOP/s  ceiling {rows[-1]['examples_per_s']:.1f} examples/s (peak measured now: "
                      f"{peaks[precision][-1]:.0f})", flush=True)
    for row in rows:
        row["peak_gflops"] = max(peaks[row["precision"]])
        row["peak_range"] = (min(peaks[row["precision"]]), max(peaks[row["precision"]]))
        row["peak_fraction"] = row["gflops"] / row["peak_gflops"]
        print(f"{row['config']:10s} {row['precision']:15s} Q/K/V {row['qkv']:8s} {100 * row['peak_fraction']:.0f}% of "
              f"the best peak measured "
              f"({row['peak_gflops']:.0f} GFLOP/s)")
    return rows


def peak_flops_dtype(precision):
    return "bfloat16" if precision == "mixed_bfloat16" else "float32"


def render(rows, repeats):
    lines = ["| config | precision | Q/K/V | products | matmul-only s/step best / median | GFLOP/s | "
             "2048^3 peak GFLOP/s (best; range) | ceiling: % of peak | ceiling examples/s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['precision']} | {r['qkv']} | {r['products']} | "
                     f"{r['best_s']:.3f} / {r['median_s']:.3f} | "
                     f"{r['gflops']:.0f} | {r['peak_gflops']:.0f} ({r['peak_range'][0]:.0f}-{r['peak_range'][1]:.0f}) | "
                     f"{100 * r['peak_fraction']:.0f}% | "
                     f"{r['examples_per_s']:.1f} |")
    return (f"{_report.machine_description()}; every matrix product of one training step (batch "
            f"{train_bench.BATCH}, sequence {train_bench.SEQ_LEN}), forward and backward, alone and one after "
            f"another; best of {repeats} steps; Q/K/V projected by three [hidden, hidden] products (separate) or one "
            f"[hidden, 3 hidden] (fused). No training step that runs all of these products can exceed the better "
            f"arrangement's fraction of the peak here, as it does more besides (ours skips the last layer's unread "
            f"rows: see train_bench.py's docstring).\n\n" + "\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="mlm_tiny,mlm_small,mlm_base")
    parser.add_argument("--precisions", default=",".join(train_bench.PRECISIONS))
    parser.add_argument("--qkv", default=",".join(QKV_ARRANGEMENTS), help="Q/K/V arrangements to time")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write_results", action="store_true", help=f"write the '{TITLE}' section of RESULTS.md")
    args = parser.parse_args()
    configs = [c for name in args.configs.split(",") for c in train_bench.ALIASES.get(name, [name])]
    unknown = [c for c in configs if c not in train_bench.CONFIGS]
    if unknown:
        parser.error(f"unknown configurations {unknown}; known: {sorted(train_bench.CONFIGS)}")
    precisions = args.precisions.split(",")
    bad = [p for p in precisions if p not in train_bench.PRECISIONS]
    if bad:
        parser.error(f"unknown precisions {bad}; known: {list(train_bench.PRECISIONS)}")
    arrangements = args.qkv.split(",")
    if any(a not in QKV_ARRANGEMENTS for a in arrangements):
        parser.error(f"--qkv takes {','.join(QKV_ARRANGEMENTS)}, got {args.qkv!r}")
    rows = measure(configs, precisions, args.repeats, arrangements)
    if args.write_results:
        _report.write_section(TITLE, render(rows, args.repeats))


if __name__ == "__main__":
    main()
