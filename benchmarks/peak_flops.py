"""This machine's matmul peak: GFLOP/s of a 2048^3 tf.linalg.matmul in float32 and bfloat16.

    python benchmarks/peak_flops.py [--size 2048] [--repeats 10] [--json]

Best of `repeats` timings (each one matmul inside a tf.function, result forced to the host with a
tiny reduction), after a warm-up. `train_bench.py` divides achieved training FLOP/s by these peaks.
"""
import argparse
import json
import time


def measure(dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of an [size, size] @ [size, size] matmul in `dtype_name` ('float32' or 'bfloat16')."""
    import tensorflow as tf

    dtype = tf.as_dtype(dtype_name)
    a = tf.cast(tf.random.stateless_normal([size, size], seed=[1, 2]), dtype)
    b = tf.cast(tf.random.stateless_normal([size, size], seed=[3, 4]), dtype)

    @tf.function
    def product(x, y):
        return tf.reduce_sum(tf.cast(tf.linalg.matmul(x, y)[:1, :1], tf.float32))

    product(a, b).numpy()  # trace + warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best / 1e9


def peaks(size: int = 2048, repeats: int = 10) -> dict:
    return {dtype: measure(dtype, size, repeats) for dtype in ("float32", "bfloat16")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args()
    result = peaks(args.size, args.repeats)
    if args.json:
        print(json.dumps(result))
        return
    import tensorflow as tf
    print(f"matmul {args.size}^3, best of {args.repeats}, TensorFlow {tf.__version__}")
    for dtype, gflops in result.items():
        print(f"  {dtype:9s} {gflops:8.1f} GFLOP/s")


if __name__ == "__main__":
    main()
