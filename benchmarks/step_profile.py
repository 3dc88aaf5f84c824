"""Where our training step's time goes: matrix products against everything else, from a profiler trace.

    .venv-mg/bin/python benchmarks/step_profile.py --config mlm_small --precision float32 [--serial]
    python benchmarks/step_profile.py --config mlm_tiny --precision mixed_bfloat16 --steps 10 --top 30

Builds our trainer exactly as train_bench.py does (same gin files, synthetic records, batch, sequence,
vocabulary and optimizer), runs two warm-up loops, times one loop, then traces one more loop of
`--steps` steps with the TensorFlow profiler and reads the op events of the trace (the host's
TensorFlow executor threads; tf.data's threads are left out). Reported per step: wall time, the union
of the matrix-product ops' intervals, the sum of the products' own times and of everything else's,
and per op type its total time and its *exposed* time (when no product was running at the same
moment).

With `--serial` the executor runs one op at a time (inter_op_parallelism_threads = 1), each on all the
intra-op threads: op times then add up to the step and each is the op's own cost, not inflated by
sharing the cores with a product. That is the split to hold against benchmarks/matmul_ceiling.py:
the products' serial sum is what they cost inside the step, the rest is what the step adds to them.
Without it (the default executor, as trained), other ops overlap the products and their times
measure waiting as much as work; the exposed column is then what they add to the step's wall time.
"""
import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_bench (not the repo's research/)

import train_bench  # noqa: E402

# Trace events that are not ops: the executor's and the function's own spans.
_NOT_OPS = ("Process", "Run")
Event = collections.namedtuple("Event", "start end op_type op_name")  # picoseconds


def is_product(op_type: str) -> bool:
    """MatMul, BatchMatMulV2, _MklMatMul, _MklNativeFusedMatMul, ... (oneDNN's renamed ops included)."""
    return "MatMul" in op_type


def events_from_xspace(space) -> list:
    """Op events (start, end in ps, type, name) of the host CPU plane's TensorFlow threads."""
    events = []
    for plane in space.planes:
        if "host:CPU" not in plane.name:
            continue
        for line in plane.lines:
            if "tf_data" in line.name:
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name:
                    continue
                op_name, op_type = name.rsplit(":", 1)
                op_type = op_type.strip()
                if op_type in _NOT_OPS or op_type.startswith("__inference"):
                    continue
                start = line.timestamp_ns * 1000 + event.offset_ps
                events.append(Event(start, start + event.duration_ps, op_type, op_name))
    return events


def merge_intervals(intervals) -> list:
    """Sorted, disjoint [start, end] intervals covering the same points."""
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def covered_length(merged, start, end) -> int:
    """Length of [start, end] covered by the merged intervals."""
    total = 0
    for m_start, m_end in merged:
        if m_start >= end:
            break
        total += max(0, min(end, m_end) - max(start, m_start))
    return total


def summarize(events, steps: int, wall_seconds: float) -> dict:
    """Per-step milliseconds: wall, product union and sums, and per op type total and exposed time."""
    ms = 1e-9 / steps  # ps -> ms per step
    products = merge_intervals((e.start, e.end) for e in events if is_product(e.op_type))
    total, exposed = collections.Counter(), collections.Counter()
    for e in events:
        total[e.op_type] += e.end - e.start
        if not is_product(e.op_type):
            exposed[e.op_type] += (e.end - e.start) - covered_length(products, e.start, e.end)
    product_sum = sum(v for k, v in total.items() if is_product(k))
    return {
        "wall_ms": wall_seconds * 1e3 / steps,
        "product_union_ms": sum(end - start for start, end in products) * ms,
        "product_sum_ms": product_sum * ms,
        "other_sum_ms": (sum(total.values()) - product_sum) * ms,
        "other_exposed_ms": sum(exposed.values()) * ms,
        "by_type": {k: {"total_ms": v * ms, "exposed_ms": exposed[k] * ms} for k, v in total.most_common()},
    }


def format_report(summary: dict, header: str, top: int) -> str:
    lines = [header,
             f"  wall {summary['wall_ms']:.1f} ms/step; products: union {summary['product_union_ms']:.1f}, "
             f"sum {summary['product_sum_ms']:.1f}; everything else: sum {summary['other_sum_ms']:.1f}, "
             f"exposed {summary['other_exposed_ms']:.1f}",
             f"  {'op type':34s} {'total ms':>9s} {'exposed ms':>11s}"]
    for op_type, times in list(summary["by_type"].items())[:top]:
        exposed = "" if is_product(op_type) else f"{times['exposed_ms']:11.1f}"
        lines.append(f"  {op_type:34s} {times['total_ms']:9.1f} {exposed:>11s}")
    return "\n".join(lines)


def profile(config: str, precision: str, steps: int, data_dir: Path, serial: bool) -> dict:
    import tensorflow as tf
    from research.core import profiler_trace

    if serial:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    task, size = train_bench.CONFIGS[config]
    with tempfile.TemporaryDirectory(prefix="step_profile_") as model_dir:
        run_loop, _ = train_bench.build_ours(task, size, precision, data_dir, steps, 1000, Path(model_dir))
        run_loop()
        run_loop()
        start = time.perf_counter()
        run_loop()
        unprofiled = (time.perf_counter() - start) / steps
        wall = []

        def timed_loop():
            start = time.perf_counter()
            run_loop()
            wall.append(time.perf_counter() - start)

        space = profiler_trace.trace(timed_loop)
    summary = summarize(events_from_xspace(space), steps, wall[0])
    summary.update(config=config, precision=precision, steps=steps, serial=serial,
                   unprofiled_step_ms=unprofiled * 1e3, tensorflow=tf.__version__)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="mlm_small", choices=sorted(train_bench.CONFIGS))
    parser.add_argument("--precision", default="float32", choices=train_bench.PRECISIONS)
    parser.add_argument("--steps", type=int, default=3, help="steps in the profiled loop")
    parser.add_argument("--serial", action="store_true", help="one op at a time (inter_op_parallelism_threads=1)")
    parser.add_argument("--top", type=int, default=25, help="op types listed")
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "train_bench_data"))
    parser.add_argument("--json_out", default="")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    data_dir = Path(args.data_dir)
    train_bench.prepare_data(data_dir)
    summary = profile(args.config, args.precision, args.steps, data_dir, args.serial)
    mode = "serial executor (one op at a time)" if args.serial else "default executor"
    print(format_report(summary, f"{args.config} {args.precision}, {mode}, {args.steps} profiled steps "
                                 f"(unprofiled step {summary['unprofiled_step_ms']:.1f} ms), "
                                 f"TensorFlow {summary['tensorflow']}", args.top))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
