"""SIGTERM and Ctrl-C (SIGINT) during training: save at the end of the loop under way, then exit.

Python runs signal handlers only between bytecodes, so while a loop of steps runs inside TensorFlow a
plain handler would stay silent until the loop ends, and a second Ctrl-C could not cut it short. Here
the C-level handler writes the signal number to a pipe (`signal.set_wakeup_fd`) and a watcher thread
reads it at once:

* the first SIGTERM or SIGINT logs what will happen and sets `requested`; the run loop saves a
  checkpoint at the end of the loop and exits with 128 + the signal number (143 for SIGTERM, what a
  shell reports for a process killed by it, so schedulers treat both alike; 130 for Ctrl-C);
* a second Ctrl-C exits at once, with code 130 and without a checkpoint (the last one saved stays
  the latest: checkpoints are written to temporary names and renamed);
* further SIGTERMs are ignored (a scheduler sends SIGKILL when its grace period ends).

Signal handlers can only be installed from the main thread; elsewhere `StopSignals` logs a warning
and does nothing.
"""
import os
import signal
import threading

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_CLOSE = 0  # written to the pipe by `__exit__` to stop the watcher (no signal has number 0)


def exit_code(signum: int) -> int:
    """128 + the signal number: what a shell reports for a process that the signal ended."""
    return 128 + signum


class StopSignals:
    """A context manager that turns SIGTERM / SIGINT into a request to checkpoint and stop.

    Attributes:
      requested: the number of the first stop signal received, or None.
    """

    def __init__(self, what: str = "saving a checkpoint at the end of this loop"):
        self.requested = None
        self._seen = 0  # stop signals the watcher has read
        self._what = what
        self._installed = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            logging.warning("Not in the main thread: SIGTERM and Ctrl-C will not be caught for a checkpoint")
            return self
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        # The Python-level handler (also what makes the C handler write the wakeup fd) records the request
        # in the main thread, so that the run loop's next check sees it; the watcher logs and exits.
        self._previous_handlers = {signum: signal.signal(signum, self._request) for signum in SIGNALS}
        self._watcher = threading.Thread(target=self._watch, name="stop-signal-watcher", daemon=True)
        self._watcher.start()
        self._installed = True
        return self

    def __exit__(self, *exc_info) -> None:
        if not self._installed:
            return
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        os.write(self._write_fd, bytes([_CLOSE]))
        self._watcher.join()
        os.close(self._read_fd)
        os.close(self._write_fd)
        self._installed = False

    def _request(self, signum, frame) -> None:
        del frame
        if self.requested is None:
            self.requested = signum

    def _watch(self) -> None:
        while True:
            for signum in os.read(self._read_fd, 64):
                if signum == _CLOSE:
                    return
                self._received(signum)

    def _received(self, signum: int) -> None:
        name = signal.Signals(signum).name
        self._seen += 1
        if self._seen == 1:
            self._request(signum, None)
            again = " (Ctrl-C again to exit at once, without it)" if signum == signal.SIGINT else ""
            logging.warning("Received %s: %s, then exiting with code %d%s", name, self._what, exit_code(signum),
                            again)
        elif signum == signal.SIGINT:
            logging.warning("Received a second Ctrl-C: exiting now with code %d, without a checkpoint",
                            exit_code(signum))
            logging.flush()
            os._exit(exit_code(signum))  # the main thread may be inside TensorFlow for a whole loop
        else:
            logging.warning("Received %s again: still finishing the loop under way", name)
