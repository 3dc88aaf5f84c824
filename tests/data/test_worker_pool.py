"""How the record builder starts its workers, and what a user sees when one dies."""
import os
import subprocess
import sys
import threading

import pytest

from research.data import worker_pool


def run_script(script, tmp_path, timeout=60):
    """Runs `script` as a file (so that spawned workers re-import it, as a user's script would)."""
    path = tmp_path / "user_script.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=tmp_path)


def test_auto_forks_in_a_plain_process_on_linux(tmp_path):
    result = run_script("from research.data import worker_pool\n"
                        "print(worker_pool.choose_start_method('auto')[0])\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("fork" if sys.platform.startswith("linux") else "spawn")


def test_auto_spawns_beside_other_threads(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        method, why = worker_pool.choose_start_method("auto")
    finally:
        stop.set()
        thread.join()
    assert method == "spawn" and ("threads" in why or not sys.platform.startswith("linux"))


def test_auto_spawns_where_tensorflow_is_loaded(monkeypatch):
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    method, why = worker_pool.choose_start_method("auto")
    assert method == "spawn" and ("TensorFlow" in why or not sys.platform.startswith("linux"))


def test_a_named_method_is_kept_and_a_bad_one_is_named():
    assert worker_pool.choose_start_method("spawn") == ("spawn", "as asked")
    with pytest.raises(ValueError, match="start_method must be one of auto, .*spawn.* got 'thread'"):
        worker_pool.choose_start_method("thread")


def unguarded_build(input_file, spm_model, output_dir, start_method):
    """A user's script that calls the builder without `if __name__ == "__main__":`."""
    return ("from absl import logging\n"
            "from research.data import build_pretraining_data as bpd\n"
            "logging.set_verbosity(logging.INFO)\n"
            f"bpd.build_pretraining_data({str(input_file)!r}, {str(spm_model)!r}, {str(output_dir)!r}, "
            f"32, workers=2, start_method={start_method!r})\n"
            "print('built')\n")


def test_a_spawned_worker_dying_at_start_is_an_error_not_a_hang(tmp_path, corpus_file, spm_model):
    # Before the settings went to spawned workers as a file, the parent blocked for good writing the
    # 64 KB+ tokenizer into the start-up pipe of a worker that had died re-importing this script.
    result = run_script(unguarded_build(corpus_file, spm_model, tmp_path / "out", "spawn"), tmp_path)
    assert result.returncode == 1
    assert "a worker process of the record builder died" in result.stderr
    assert 'if __name__ == "__main__":' in result.stderr
    assert os.listdir(tmp_path / "out") == []


def test_a_forked_build_needs_no_main_guard(tmp_path, corpus_file, spm_model):
    result = run_script(unguarded_build(corpus_file, spm_model, tmp_path / "out", "auto"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "built"
    if sys.platform.startswith("linux"):
        assert ("2 worker processes, started by fork (no other Python thread and no TensorFlow in this "
                "process, on Linux)") in result.stderr
