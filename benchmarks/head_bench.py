"""Fused masked-LM head: the chunked native path (Research>SoftmaxXentChunk) vs its pure-TensorFlow twin (reference).

Times one training step of the head, forward + backward, of loss = sum(per_position_loss) / sum(weights)
w.r.t. hidden, embedding table and bias, inside a tf.function (no XLA), and measures the memory it
holds: each configuration runs in its own subprocess, which after a warm-up step resets the kernel's
peak-RSS counter (`echo 5 > /proc/self/clear_refs`), then reports VmHWM - VmRSS (from
/proc/self/status) over the timed steps, i.e. the peak resident memory a step adds on top of its
inputs. TensorFlow's allocator statistics (`tf.config.experimental.get_memory_info('CPU:0')` after
`reset_memory_stats`, which work on CPU in TF 2.21) are reported too: they leave out memory that
oneDNN allocates itself. Subprocesses alternate between the backends for
`--rounds` rounds, since the speed of a shared host drifts. Model Garden's MaskedLM is not wired
in; the report says whether `official` was importable in the run.

A backend suffixed `:xla` (`chunked:xla`, `reference:xla`) runs the same step compiled by XLA
(`tf.function(jit_compile=True)`), where `auto` picks the chunked head in plain TensorFlow ops; its
*XLA MB* column is what the compiled program allocates beyond its inputs (outputs + temporaries, from
XLA's buffer assignment: research/core/xla_memory.py), and its speed-up is against `reference:xla`.

    python benchmarks/head_bench.py [--repeats 3] [--rounds 2] [--configs 640x128,19456x768] [--write_results]
    python benchmarks/head_bench.py --backends chunked:xla,reference:xla --configs 19456x768 --rounds 1
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report  # noqa: E402

VOCAB = 30522
CONFIGS = [(640, 128), (2432, 128), (19456, 128), (640, 768), (2432, 768), (19456, 768)]
TITLE = "Fused MLM head (benchmarks/head_bench.py)"


def _status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(n, d, backend, repeats):  # noqa: C901 (one measurement, read top to bottom)
    """Runs in the subprocess: prints one JSON line with the timings and the memory figures."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.RandomState(0)
    hidden = tf.constant(rng.randn(n, d).astype(np.float32) * 0.05)
    table = tf.constant(rng.randn(VOCAB, d).astype(np.float32) * 0.05)
    bias = tf.constant(np.zeros(VOCAB, np.float32))
    labels = tf.constant(rng.randint(0, VOCAB, size=n).astype(np.int32))
    weights = tf.ones([n], tf.float32)

    if backend == "model_garden":
        from official.nlp.modeling import layers  # noqa: F401  (only when installed)
        raise NotImplementedError("Model Garden's MaskedLM is not wired up: it is not installed here")

    from research import ops

    backend, _, mode = backend.partition(":")
    jit = mode == "xla"

    @tf.function(jit_compile=jit)
    def step(hidden, table, bias):
        with tf.GradientTape() as tape:
            tape.watch([hidden, table, bias])
            loss, _ = ops.masked_lm_loss(hidden, table, bias, labels, weights, backend=backend)
            total = tf.reduce_sum(loss) / tf.reduce_sum(weights)
        grads = tape.gradient(total, [hidden, table, bias])
        return total, grads

    def run_once():
        total, grads = step(hidden, table, bias)
        total.numpy()
        del grads

    # Load the library and initialise oneDNN on tiny inputs, so that the held memory counts
    # only what the steps themselves need; the first step (tracing) is part of the measurement.
    if repeats == 0:  # --repeats 0: only what XLA allocates for the step (compiled, not run)
        from research.core.xla_memory import compiled_memory
        xla_mb = compiled_memory(step, hidden, table, bias).allocated / 2**20 if jit else None
        print(json.dumps({"durations": [], "held_mb": None, "tf_peak_mb": None, "live_mb": None, "xla_mb": xla_mb}))
        return
    tiny = [x[:2] for x in (hidden, table, bias)]
    ops.masked_lm_loss(*tiny, tf.zeros([2], tf.int32), tf.ones([2]), backend=backend)
    tf.matmul(tiny[0], tiny[1], transpose_b=True)
    peak_reset = _reset_peak()
    rss_before = _status_kb("VmRSS")
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        tf_before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except (ValueError, RuntimeError, KeyError):
        tf_before = None
    durations = _report.time_runs(run_once, repeats)  # one warm-up step, then the timed ones
    held_mb = (_status_kb("VmHWM") - rss_before) / 1024 if peak_reset else None
    try:
        tf_peak = (tf.config.experimental.get_memory_info("CPU:0")["peak"] - tf_before) / 2**20
    except (ValueError, RuntimeError, KeyError, TypeError):
        tf_peak = None
    from research.core.memory_profile import peak_live_tensor_bytes
    live_mb = xla_mb = None
    if not jit:  # under XLA its buffer assignment says what the program allocates, without one more step
        live_mb = peak_live_tensor_bytes(run_once) / 2**20  # one more step, profiled
    else:
        from research.core.xla_memory import compiled_memory
        xla_mb = compiled_memory(step, hidden, table, bias).allocated / 2**20
    print(json.dumps({"durations": durations, "held_mb": held_mb, "tf_peak_mb": tf_peak, "live_mb": live_mb,
                      "xla_mb": xla_mb}))


def measure(n, d, backend, repeats):
    """Runs one configuration in a fresh process; returns its JSON result or an error string."""
    command = [sys.executable, __file__, "--child", f"{n},{d},{backend}", "--repeats", str(repeats)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _reference_of(backend):
    """The row a backend's speed-up is against: the reference run the same way (with or without XLA)."""
    return "reference:xla" if backend.endswith(":xla") else "reference"


def model_garden_available():
    probe = subprocess.run([sys.executable, "-c", "import official.nlp.modeling.layers"], capture_output=True,
                           check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return probe.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per configuration (after a warm-up); "
                                                                   "0: no run, only the XLA MB of :xla backends")
    parser.add_argument("--configs", default=",".join(f"{n}x{d}" for n, d in CONFIGS), help="NxD,NxD,...")
    parser.add_argument("--backends", default="native,reference")
    parser.add_argument("--rounds", type=int, default=2, help="alternating subprocesses per backend and configuration")
    parser.add_argument("--write_results", action="store_true", help=f"write the '{TITLE}' section of RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, d, backend = args.child.split(",")
        child(int(n), int(d), backend, args.repeats)
        return

    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    backends = args.backends.split(",")
    model_garden = ("not measured (`official` was importable in this run, but its MaskedLM is not wired into this "
                    "benchmark)" if model_garden_available() else "not measured (`official` was not installed in "
                                                                    "this run)")
    print(f"Model Garden's MaskedLM: {model_garden}")
    rows = []
    print(f"V = {VOCAB}; forward + backward of sum(loss) / sum(weights), float32, all weights 1; "
          f"{args.rounds} alternating rounds of {args.repeats} steps per backend")
    print(f"{'N':>6} {'D':>4} {'backend':>10} {'median s':>9} {'best s':>7} {'held MB':>8} {'TF peak MB':>10} "
          f"{'live MB':>8} {'XLA MB':>7} {'logits MB':>9} {'speed-up':>8}")
    for n, d in configs:
        results = {backend: {"durations": [], "held_mb": [], "tf_peak_mb": [], "live_mb": [], "xla_mb": [],
                             "error": None} for backend in backends}
        for _ in range(args.rounds):  # alternating processes: the host's speed drifts
            for backend in backends:
                result = measure(n, d, backend, args.repeats)
                if isinstance(result, str):
                    results[backend]["error"] = result
                    continue
                for key in ("durations", "held_mb", "tf_peak_mb", "live_mb", "xla_mb"):
                    value = result.get(key)
                    results[backend][key] += value if isinstance(value, list) else ([] if value is None else [value])
        medians = {b: statistics.median(r["durations"]) for b, r in results.items() if r["durations"]}
        for backend, result in results.items():
            if args.repeats == 0 and not result["error"]:
                xla = max(result["xla_mb"]) if result["xla_mb"] else None
                print(f"{n:>6} {d:>4} {backend:>10} XLA MB {'n/a' if xla is None else f'{xla:.0f}'} "
                      f"({'n/a' if xla is None else f'{xla / (n * VOCAB * 4 / 2**20):.1%}'} of the logits)")
                continue
            if backend not in medians:
                print(f"{n:>6} {d:>4} {backend:>10} failed: {result['error']}")
                rows.append((n, d, backend, None, None, None, None, None, None, result["error"]))
                continue
            median, best = medians[backend], min(result["durations"])
            held = max(result["held_mb"]) if result["held_mb"] else None
            tf_peak = max(result["tf_peak_mb"]) if result["tf_peak_mb"] else None
            live = max(result["live_mb"]) if result["live_mb"] else None
            xla = max(result["xla_mb"]) if result["xla_mb"] else None
            reference = _reference_of(backend)
            speedup = medians[reference] / median if reference in medians else None
            fmt = lambda x, spec: "n/a" if x is None else format(x, spec)  # noqa: E731
            print(f"{n:>6} {d:>4} {backend:>10} {median:>9.3f} {best:>7.3f} {fmt(held, '.0f'):>8} "
                  f"{fmt(tf_peak, '.0f'):>10} {fmt(live, '.0f'):>8} {fmt(xla, '.0f'):>7} "
                  f"{n * VOCAB * 4 / 2**20:>9.0f} {fmt(speedup, '.2f'):>8}", flush=True)
            rows.append((n, d, backend, median, best, held, tf_peak, live, xla, None))

    if args.write_results:
        lines = [f"Machine: {_report.machine_description()}.", "",
                 f"One training step of the head (forward + backward of sum(loss) / sum(weights) w.r.t. hidden, "
                 f"table and bias), float32, V = {VOCAB}, all weights 1, inside `tf.function` without XLA; "
                 f"median and best of {args.repeats} steps after a warm-up. *Held* is the peak resident memory a "
                 "step adds above its inputs (VmHWM - VmRSS from /proc/self/status after resetting the peak with "
                 "/proc/self/clear_refs before the first step; one subprocess per configuration and round, rounds "
                 f"alternating between backends ({args.rounds} rounds), the largest figure kept). *TF peak* is "
                 "TensorFlow's CPU allocator peak over the same steps (`tf.config.experimental.get_memory_info`, "
                 "after `reset_memory_stats`), above the inputs; it leaves out oneDNN's own buffers and counts whole "
                 "allocator chunks, so it moves with what ran before. *Live* is the largest sum of the tensors "
                 "alive at once during one more (profiled) step, by their requested sizes "
                 "(research/core/memory_profile.py): what the step itself needs. "
                 "*Logits* is the size of the reference's [N, V] float32 logits. "
                 f"Model Garden's MaskedLM: {model_garden}. Backends suffixed `:xla` "
                 "run the step under `jit_compile=True`; *XLA MB* is what the compiled program allocates beyond its "
                 "inputs (outputs + temporaries, XLA's buffer assignment), and their speed-up is against "
                 "`reference:xla`.", "",
                 "| N | D | backend | median s | best s | held MB | TF peak MB | live MB | XLA MB | logits MB | "
                 "speed-up vs reference |",
                 "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        reference = {(n, d, backend): median for n, d, backend, median, *_ in rows
                     if backend.startswith("reference") and median}
        for n, d, backend, median, best, held, tf_peak, live, xla, error in rows:
            if median is None:
                lines.append(f"| {n} | {d} | {backend} | failed: {error} | | | | | | | |")
                continue
            ref = reference.get((n, d, _reference_of(backend)))
            speedup = f"{ref / median:.2f}x" if ref else "n/a"
            held_text = "n/a" if held is None else f"{held:.0f}"
            tf_text = "n/a" if tf_peak is None else f"{tf_peak:.0f}"
            live_text = "n/a" if live is None else f"{live:.0f}"
            xla_text = "n/a" if xla is None else f"{xla:.0f}"
            lines.append(f"| {n} | {d} | {backend} | {median:.3f} | {best:.3f} | {held_text} | {tf_text} | "
                         f"{live_text} | {xla_text} | {n * VOCAB * 4 / 2**20:.0f} | {speedup} |")
        _report.write_section(TITLE, "\n".join(lines))
        print(f"wrote the '{TITLE}' section of {_report.RESULTS}")


if __name__ == "__main__":
    main()
