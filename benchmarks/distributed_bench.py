"""Examples/s and losses of the tiny masked-LM experiment: one process vs two local MultiWorkerMirrored workers.

    python benchmarks/distributed_bench.py [--steps=60]

Both runs go through `python -m research.main` with the same seed, global batch and split-invariant
data (tests/distributed/harness.py), so their losses must agree to float32 round-off; the workers are
localhost processes on the same cores, so no speedup is expected: the point is correctness and the
cost of the all-reduce. Writes the "Distributed (tests/distributed)" section of benchmarks/RESULTS.md.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from distributed import harness  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report  # noqa: E402

GLOBAL_BATCH = 16


def _steady_examples_per_second(stderr: str) -> float:
    """Median examples/s of the loops after the first (which includes tracing)."""
    rates = [float(line.split("examples/s: ")[1].split(" ")[0]) for line in stderr.splitlines() if "train | step: " in line]
    rates = sorted(rates[1:] or rates)
    return rates[len(rates) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--steps_per_loop", type=int, default=20)
    args = parser.parse_args()
    params = [*harness.SPLIT_INVARIANT, f"GLOBAL_BATCH_SIZE = {GLOBAL_BATCH}",
              f"STEPS_PER_LOOP = {args.steps_per_loop}"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        records = harness.write_split_invariant_records(tmp / "records", per_shard=32)
        with harness.Cluster(tmp / "logs") as cluster:
            single = cluster.start("single", harness.main_command(tmp / "single", records, args.steps, *params))
            cluster.wait(["single"], 600)
            spec = harness.cluster_spec(worker=2)
            for index in range(2):
                cluster.start(f"worker{index}", harness.main_command(
                    tmp / "multi", records, args.steps, *params, flags=["--distribution_strategy=multi_worker_mirrored"]),
                    harness.tf_config(spec, "worker", index))
            codes = cluster.wait(["worker0", "worker1"], 600)
        if single.poll() != 0 or any(codes.values()):
            raise SystemExit(cluster.report())
        chief = cluster.tasks["worker0"]
        rates = {"1 process (one_device)": _steady_examples_per_second(single.stderr),
                 "2 workers (multi_worker_mirrored, localhost)": _steady_examples_per_second(chief.stderr)}
        single_losses, multi_losses = harness.train_losses(single.stderr), harness.train_losses(chief.stderr)
        loss_diffs = [abs(multi_losses[s] - single_losses[s]) for s in single_losses]
        single_eval, multi_eval = harness.evaluation(single.stdout), harness.evaluation(chief.stdout)
    eval_diff = abs(multi_eval["validation_loss"] - single_eval["validation_loss"])
    lines = [f"Tiny masked-LM experiment (hidden 16, 1 layer, seq 16), global batch {GLOBAL_BATCH}, {args.steps} "
             f"AdamW steps, loops of {args.steps_per_loop}; examples/s is the median of the loops after the first. "
             f"{_report.machine_description()}.", "",
             "| run | examples/s |", "|---|---|"]
    lines += [f"| {name} | {rate:.0f} |" for name, rate in rates.items()]
    lines += ["", f"Training loss at steps {sorted(single_losses)}: 1 process {[single_losses[s] for s in sorted(single_losses)]}, "
              f"2 workers {[multi_losses[s] for s in sorted(multi_losses)]}; max |difference| {max(loss_diffs):.2g} "
              f"(losses are logged to 6 significant digits). Validation loss: {single_eval['validation_loss']:.7f} vs "
              f"{multi_eval['validation_loss']:.7f}, |difference| {eval_diff:.2g}.", "",
              f"2 workers / 1 process examples/s: {rates['2 workers (multi_worker_mirrored, localhost)'] / rates['1 process (one_device)']:.2f}x "
              f"(both on the same {os.cpu_count()} cores)."]
    body = "\n".join(lines)
    print(body)
    _report.write_section("Distributed (tests/distributed, benchmarks/distributed_bench.py)", body)


if __name__ == "__main__":
    main()
