"""The record builder's worker processes: how they start, and what a dead one means.

Starting a worker by `spawn` costs a fresh interpreter, its imports and a rebuilt tokenizer: about
0.5 s of a core each, which on a 2-core machine held 2 workers to 1.6x one (RESULTS.md). `fork`
starts them at once, sharing the tokenizer already loaded, but forking a process whose other threads
may hold locks can deadlock the child. So `auto` forks only where no thread we know of can hold one:

  - fork: on Linux, when this process runs no other Python thread and has not imported TensorFlow
    (whose C++ thread pools run beside Python); the command-line builder is always such a process
    (numpy's OpenBLAS threads are there too, but OpenBLAS stops them around a fork);
  - spawn: otherwise (macOS, Windows, inside a threaded server or a notebook running TensorFlow).

Either way the records are the same (tests hold this).
"""
import concurrent.futures
import multiprocessing
import sys
import threading

START_METHODS = ("auto", "fork", "spawn", "forkserver")


def choose_start_method(requested="auto"):
    """Returns (start method, why) for `requested` in START_METHODS.

    Raises:
      ValueError: `requested` is unknown or not available on this platform.
    """
    available = multiprocessing.get_all_start_methods()
    if requested != "auto":
        if requested not in START_METHODS or requested not in available:
            choices = ", ".join(m for m in START_METHODS if m == "auto" or m in available)
            raise ValueError(f"start_method must be one of {choices} here, got {requested!r}")
        return requested, "as asked"
    if "fork" not in available or not sys.platform.startswith("linux"):
        return "spawn", f"fork is not safe on {sys.platform}"
    if "tensorflow" in sys.modules:
        return "spawn", "TensorFlow is loaded in this process and its threads may hold locks at a fork"
    if threading.active_count() > 1:
        return "spawn", f"{threading.active_count()} Python threads run in this process"
    return "fork", "no other Python thread and no TensorFlow in this process, on Linux"


class InProcess:
    """The executor interface for one worker: runs every task here, in order, when submitted."""

    def __init__(self, initializer, initargs):
        initializer(*initargs)

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        del wait, cancel_futures


def make_executor(workers, start_method, initializer, initargs):
    """An executor of `workers` processes started by `start_method` (InProcess for one worker).

    With spawn or forkserver, `initargs` are pickled into each worker's start-up pipe: keep them
    small (paths, not models). Python 3.11 writes that pipe while holding the child's end open, so a
    child dying at start (a script without `if __name__ == "__main__":`) hangs the parent for good
    once the arguments exceed the pipe's 64 KB buffer.
    """
    if workers == 1:
        return InProcess(initializer, initargs)
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context(start_method),
        initializer=initializer, initargs=initargs)


def worker_died_error(start_method):
    """The error to raise, from BrokenProcessPool, when a worker process died."""
    advice = ("killed by the system (out of memory? lower --bucket_megabytes) or crashed; its error, "
              "if any, is printed above")
    if start_method != "fork":
        advice += (f". With start method {start_method}, each worker re-imports the main script: a "
                   "script calling build_pretraining_data must do so under `if __name__ == \"__main__\":`")
    return RuntimeError(f"a worker process of the record builder died: {advice}")
