"""Forward + backward time of the masked-LM gather: native `Research>GatherPositions` vs tf.gather.

One step is a tf.function that gathers the hidden states at P positions per row, takes
sum(output * w) for a fixed random w as the loss, and returns the dense gradient with respect to
the sequence (tf.gather(batch_dims=1) already returns it dense, like the native op). Best (min)
and median of repeated timed steps after a warm-up; target: native at least as fast as tf.gather.

    python benchmarks/gather_bench.py [--repeats=50] [--write_results]
"""
import statistics
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, str(Path(__file__).parent))
import _report  # noqa: E402

from research import ops  # noqa: E402

_REPEATS = flags.DEFINE_integer("repeats", 50, "timed steps per configuration and implementation")
_WRITE = flags.DEFINE_bool("write_results", False, "update the gather section of benchmarks/RESULTS.md")

CONFIGS = [(32, 128, 20, 128), (32, 128, 20, 768), (256, 512, 76, 768)]  # batch, seq_len, P, hidden
IMPLEMENTATIONS = {
    "native": lambda sequence, positions: ops.gather_positions(sequence, positions, backend="native"),
    "tf.gather": lambda sequence, positions: tf.gather(sequence, positions, batch_dims=1),
}


def make_inputs(batch, seq_len, num_positions, hidden, seed=0):
    rng = np.random.RandomState(seed)
    sequence = tf.constant(rng.randn(batch, seq_len, hidden).astype(np.float32))
    positions = tf.constant(np.stack([np.sort(rng.choice(seq_len, num_positions, replace=False))
                                      for _ in range(batch)]).astype(np.int32))
    weights = tf.constant(rng.randn(batch, num_positions, hidden).astype(np.float32))
    return sequence, positions, weights


def step_function(gather):
    @tf.function
    def step(sequence, positions, weights):
        with tf.GradientTape() as tape:
            tape.watch(sequence)
            loss = tf.reduce_sum(gather(sequence, positions) * weights)
        return loss, tf.convert_to_tensor(tape.gradient(loss, sequence))
    return step


def measure(gather, inputs, repeats):
    step = step_function(gather)

    def run_once():
        _, grad = step(*inputs)
        grad.numpy()  # waits for the result (a no-op copy-free view on CPU)

    durations = _report.time_runs(run_once, repeats)
    return min(durations), statistics.median(durations)


def main(argv):
    del argv
    header = "| batch x seq_len x P x hidden | implementation | ms best | ms median | tf.gather / native (median) |"
    lines = [header, "|---|---|---:|---:|---:|"]
    for batch, seq_len, num_positions, hidden in CONFIGS:
        inputs = make_inputs(batch, seq_len, num_positions, hidden)
        # Both implementations must agree before their times mean anything.
        native_grad = step_function(IMPLEMENTATIONS["native"])(*inputs)[1]
        reference_grad = step_function(IMPLEMENTATIONS["tf.gather"])(*inputs)[1]
        np.testing.assert_allclose(native_grad.numpy(), reference_grad.numpy(), rtol=1e-6, atol=1e-6)
        results = {name: measure(gather, inputs, _REPEATS.value) for name, gather in IMPLEMENTATIONS.items()}
        label = f"{batch}x{seq_len}x{num_positions}x{hidden}"
        native_median = results["native"][1]
        for name, (best, median) in results.items():
            ratio = median / native_median
            print(f"{label} {name}: best {best * 1e3:.3f} ms, median {median * 1e3:.3f} ms, "
                  f"tf.gather/native {ratio:.2f}x" if name != "native" else
                  f"{label} {name}: best {best * 1e3:.3f} ms, median {median * 1e3:.3f} ms", flush=True)
            lines.append(f"| {label} | {name} | {best * 1e3:.3f} | {median * 1e3:.3f} | {ratio:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if _WRITE.value:
        _report.write_section("Gather (benchmarks/gather_bench.py)",
                              f"{_report.machine_description()}; forward + backward (dense gradient) per step, "
                              f"float32; target: native >= 1.0x tf.gather.\n\n{table}")


if __name__ == "__main__":
    app.run(main)
