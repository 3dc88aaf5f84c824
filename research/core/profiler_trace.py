"""Run a function under the TensorFlow profiler and return its trace as an XSpace proto."""
import glob
import os
import tempfile

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2


def trace(fn, host_tracer_level: int = 2) -> xplane_pb2.XSpace:
    """Calls `fn()` with the profiler on; returns the trace it wrote (the log directory is removed).

    host_tracer_level: 2 records ops; 3 also records allocations (MemoryAllocation events).
    """
    with tempfile.TemporaryDirectory(prefix="profiler_trace_") as logdir:
        tf.profiler.experimental.start(
            logdir, options=tf.profiler.experimental.ProfilerOptions(host_tracer_level=host_tracer_level))
        try:
            fn()
        finally:
            tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if len(paths) != 1:
            raise RuntimeError(f"expected one .xplane.pb trace under {logdir}, found {paths}")
        space = xplane_pb2.XSpace()
        with open(paths[0], "rb") as file:
            space.ParseFromString(file.read())
    return space
