"""The `backend` switch shared by every op: 'auto' | 'native' | 'reference'.

'native' runs the C++ kernel and fails loudly when it cannot; 'reference' runs the pure-TensorFlow
twin; 'auto' picks native where the kernel can run and the twin elsewhere: inside an XLA
(`jit_compile`) function, on TPU or GPU for ops that run on the accelerator (the kernels are CPU
only), or when the library is missing. Each choice is logged once per op and reason.
`masked_lm_loss` falls back to its memory-lean chunked head in plain TensorFlow instead of the
explicit-logits twin (its `backend='reference'`).
"""
import contextlib
import threading

import tensorflow as tf
from absl import logging
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

from research.ops._loader import LIBRARY

BACKENDS = ("auto", "native", "reference")
_logged_choices = set()
_logged_lock = threading.Lock()
_reference_only = threading.local()


@contextlib.contextmanager
def reference_only():
    """Within this context (in this thread), 'auto' picks the reference twin of every op and 'native'
    raises: a graph traced here holds only TensorFlow's own ops, so a SavedModel of it loads without
    the native library (research.export traces its serving functions here)."""
    depth = getattr(_reference_only, "depth", 0)
    _reference_only.depth = depth + 1
    try:
        yield
    finally:
        _reference_only.depth = depth


def in_reference_only() -> bool:
    """True inside `reference_only()`."""
    return getattr(_reference_only, "depth", 0) > 0


def in_xla_context() -> bool:
    """True while tracing a function that XLA will compile (jit_compile=True, TPU replication)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def _accelerator_reason() -> str | None:
    if tf.config.list_logical_devices("TPU"):
        return "a TPU is attached and the native kernels are CPU-only"
    if tf.config.list_logical_devices("GPU"):
        return "a GPU is attached and the native kernels are CPU-only"
    return None


def _log_once(op_name: str, choice: str, reason: str) -> None:
    key = (op_name, choice, reason)
    with _logged_lock:
        if key in _logged_choices:
            return
        _logged_choices.add(key)
    logging.info("research.ops: %s uses the %s implementation (%s)", op_name, choice, reason)


def resolve(op_name: str, backend: str, *, host_op: bool = False, fallback: str = "reference"):
    """Returns the loaded native library when `backend` selects the kernel, else None.

    Args:
      op_name: the op's registered name, for messages.
      backend: 'auto', 'native' or 'reference'.
      host_op: True for ops that always run on the host CPU (input-pipeline ops), where an attached
        accelerator does not make the native kernel unusable.
      fallback: the name of what the caller runs when this returns None, for the log line ('reference',
        or 'chunked' for masked_lm_loss, whose 'auto' falls back to its XLA-friendly chunked head).

    Raises:
      ValueError: for an unknown backend, or 'native' inside an XLA-compiled function.
      RuntimeError: for 'native' when the library is unavailable.
    """
    if backend not in BACKENDS:
        raise ValueError(f"{op_name}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return None
    if in_reference_only():
        if backend == "native":
            raise ValueError(f"{op_name}: backend='native' inside research.ops.backend.reference_only() (a graph "
                             "that must load without the native kernels, e.g. an export); use 'auto' or 'reference'")
        _log_once(op_name, "reference", "inside reference_only(): a graph that must run without the native kernels")
        return None
    library = LIBRARY.get()
    if backend == "native":
        if library is None:
            raise RuntimeError(f"{op_name}: backend='native' but the native kernels are unavailable: "
                               f"{LIBRARY.unavailable_reason}")
        if in_xla_context():
            raise ValueError(f"{op_name}: backend='native' cannot run inside an XLA-compiled function "
                             "(jit_compile=True, TPU); use backend='auto' or 'reference' there")
        return library
    reason = None
    if library is None:
        reason = f"native kernels unavailable: {LIBRARY.unavailable_reason}"
    elif in_xla_context():
        reason = "inside an XLA-compiled function"
    elif not host_op:
        reason = _accelerator_reason()
    if reason is not None:
        _log_once(op_name, fallback, reason)
        return None
    _log_once(op_name, "native", "the C++ kernel is loaded and usable here")
    return library
