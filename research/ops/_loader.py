"""Finds, checks and loads the native op library built by CMake (`libresearch_ops.so`).

Two failure modes are kept apart on purpose:
  * a library built for another TensorFlow is an error at import of `research.ops`: loading it could
    crash the process or silently compute garbage, and the fix (a rebuild) is the user's to make;
  * a missing or unloadable library is a logged fallback to the pure-TensorFlow reference twins.

`RESEARCH_OPS_LIBRARY_DIR` points the loader at another build (an AddressSanitizer build, say).
"""
import json
import os
import threading
from pathlib import Path

import tensorflow as tf
from absl import logging

LIBRARY_NAME = "libresearch_ops.so"
BUILD_INFO_NAME = "_build_info.json"
REBUILD_HINT = ("rebuild the kernels for the installed TensorFlow from the source tree with "
                "`pip install --no-build-isolation --force-reinstall --no-deps .` (or reinstall the package "
                "under the TensorFlow you want)")


class TensorFlowVersionMismatchError(ImportError):
    """The op library was compiled against a TensorFlow other than the one imported."""


def library_dir() -> Path:
    return Path(os.environ.get("RESEARCH_OPS_LIBRARY_DIR") or Path(__file__).parent)


def built_tensorflow_version(directory: Path | None = None) -> str | None:
    """Returns the TensorFlow version recorded at build time, or None when there is no build."""
    info_path = (directory or library_dir()) / BUILD_INFO_NAME
    if not info_path.exists():
        return None
    with open(info_path, encoding="utf-8") as info_file:
        return json.load(info_file)["tensorflow_version"]


def check_tensorflow_version(directory: Path | None = None) -> None:
    """Raises TensorFlowVersionMismatchError when the library was built for another TensorFlow."""
    built = built_tensorflow_version(directory)
    if built is not None and built != tf.__version__:
        raise TensorFlowVersionMismatchError(
            f"research.ops: the native kernels in {directory or library_dir()} were built for TensorFlow {built}, "
            f"but TensorFlow {tf.__version__} is installed; {REBUILD_HINT}.")


class _Library:
    """Loads the op library once per process; remembers why it could not."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loaded = False
        self._module = None
        self.unavailable_reason = None

    def get(self):
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self._module = self._load()
            return self._module

    def _load(self):
        path = library_dir() / LIBRARY_NAME
        if not path.exists():
            self.unavailable_reason = f"{path} does not exist (the package was installed without its C++ build)"
        else:
            try:
                module = tf.load_op_library(str(path))
            except (tf.errors.NotFoundError, OSError, ImportError) as error:
                self.unavailable_reason = f"{path} could not be loaded: {error}"
            else:
                from research.ops import _gradients  # noqa: F401  (registers gradients once, with the ops)
                logging.info("research.ops: loaded native kernels from %s", path)
                return module
        logging.warning("research.ops: native kernels unavailable, the reference implementations will be used: %s",
                        self.unavailable_reason)
        return None


LIBRARY = _Library()
