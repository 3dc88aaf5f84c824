"""Exact resume, preemption, a crash while checkpointing and divergence, through the training binary.

All runs are the tiny MLM experiment (gin/experiments/bert_base_pretrain.gin with TINY overrides, dropout on)
under `--deterministic` (seeded, `tf.config.experimental.enable_op_determinism()`), through
tests/reliability/_driver.py: research.main plus a log of the example ids of each consumed batch.
What holds: on CPU, an interrupted and resumed run ends with every checkpointed tensor (weights, optimizer
slots, step, data position, dropout RNG states) bitwise equal to the uninterrupted run's, and it consumed
the same batches in the same order (the data stream restarts at the checkpoint's `train_batches`).
"""
import numpy as np
import pytest
import tensorflow as tf

from helpers import checkpoint_tensors, read_ids_log, run_binary, write_id_records

STEPS = 14  # loops of 2 steps, checkpoints at 4, 8, 12 and 14 (end)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: (records glob, model_dir, ids log rows)."""
    root = tmp_path_factory.mktemp("reference")
    records = write_id_records(root / "records")
    result = run_binary(root / "run", records, STEPS, ids_log=root / "ids.log")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_ids_log(root / "ids.log")
    assert [(step, batches) for step, batches, _ in rows] == [(s, s) for s in range(STEPS)]
    return records, root / "run", rows


def assert_bitwise_equal(prefix, reference_prefix):
    got, expected = checkpoint_tensors(prefix), checkpoint_tensors(reference_prefix)
    assert set(got) == set(expected)
    different = [name for name in expected if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
                 and not np.array_equal(got[name], expected[name])]
    assert not different, different
    assert any("rng_states" in name for name in got)  # the dropout RNG is part of what must resume
    return len(got)




def test_sigkill_then_restart_ends_bitwise_equal_with_the_same_examples(reference, tmp_path):
    records, reference_dir, reference_rows = reference
    log = tmp_path / "ids.log"
    killed = run_binary(tmp_path / "run", records, STEPS, ids_log=log, kill_at_step=6)
    assert killed.returncode == -9  # SIGKILL in the middle of the loop 6..8, after ckpt-4
    assert not (tmp_path / "run" / "ckpt-8.index").exists()
    restarted = run_binary(tmp_path / "run", records, STEPS, ids_log=log)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "Restored" in restarted.stderr and "ckpt-4 (step 4, 4 training batches taken)" in restarted.stderr
    rows = read_ids_log(log)
    assert [r[0] for r in rows] == list(range(7)) + list(range(4, STEPS))  # batch 6 was taken, never trained
    consumed = [r for r in rows[:4]] + rows[7:]
    assert consumed == reference_rows  # same examples, same order: none repeated, none skipped
    assert_bitwise_equal(tmp_path / "run" / f"ckpt-{STEPS}", reference_dir / f"ckpt-{STEPS}")


@pytest.mark.parametrize("signal_name, exit_code", [("TERM", 143), ("INT", 130)])  # preemption; Ctrl-C
def test_a_stop_signal_checkpoints_the_current_step_exits_and_resumes_exactly(reference, tmp_path, signal_name,
                                                                              exit_code):
    records, reference_dir, reference_rows = reference
    log = tmp_path / "ids.log"
    preempted = run_binary(tmp_path / "run", records, STEPS, ids_log=log, kill_at_step=9, signal_name=signal_name)
    assert preempted.returncode == exit_code, preempted.stderr[-3000:]
    # Bounded by steps, not seconds: the loop under way (steps 8-9) ends, is saved, and nothing more runs.
    assert [step for step, _, _ in read_ids_log(log)] == list(range(10))
    assert "KeyboardInterrupt" not in preempted.stderr
    assert f"Received SIG{signal_name}: saving a checkpoint at the end of this loop" in preempted.stderr
    assert "Saved checkpoint" in preempted.stderr and f"(stopped by SIG{signal_name})" in preempted.stderr
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-10")
    resumed = run_binary(tmp_path / "run", records, STEPS, ids_log=log)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "ckpt-10 (step 10, 10 training batches taken)" in resumed.stderr
    assert read_ids_log(log) == reference_rows
    assert_bitwise_equal(tmp_path / "run" / f"ckpt-{STEPS}", reference_dir / f"ckpt-{STEPS}")


def test_crash_while_saving_keeps_the_previous_checkpoint_and_restart_picks_it(reference, tmp_path):
    records, reference_dir, reference_rows = reference
    crashed = run_binary(tmp_path / "run", records, STEPS, crash_in_save=8)
    assert crashed.returncode == -9
    assert (tmp_path / "run" / "ckpt-8.index").exists()  # a half-written ckpt-8 is left behind
    restarted = run_binary(tmp_path / "run", records, STEPS, ids_log=tmp_path / "ids.log")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "Skipped a checkpoint that cannot be restored" in restarted.stderr and "ckpt-8" in restarted.stderr
    assert "ckpt-4 (step 4, 4 training batches taken)" in restarted.stderr
    assert read_ids_log(tmp_path / "ids.log") == reference_rows[4:]
    assert_bitwise_equal(tmp_path / "run" / f"ckpt-{STEPS}", reference_dir / f"ckpt-{STEPS}")


def _poison(reference_rows):
    """An example id first seen in batch 5 (the loop ending at step 6) and in no other batch."""
    counts = {}
    for _, _, ids in reference_rows:
        for example in set(ids):
            counts[example] = counts.get(example, 0) + 1
    return next(example for example in reference_rows[5][2] if counts[example] == 1 and example not in
                reference_rows[4][2])


def test_nan_loss_stops_naming_the_step_and_rollback_skips_the_poisoned_batch(reference, tmp_path):
    records, _, reference_rows = reference
    poison = _poison(reference_rows)
    stopped = run_binary(tmp_path / "stop", records, 12, poison_id=poison)
    assert stopped.returncode != 0
    assert "LossDivergedError" in stopped.stderr and "nan in the loop ending at step 6" in stopped.stderr
    assert sorted(p.name for p in (tmp_path / "stop").glob("ckpt-*.index")) == ["ckpt-4.index"]

    log = tmp_path / "ids.log"
    recovered = run_binary(tmp_path / "recover", records, 12, "config_definitions.TrainerConfig.recovery_max_trials = 1",
                           poison_id=poison, ids_log=log)
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    assert "recovery 1 of 1" in recovered.stderr
    rows = read_ids_log(log)
    # Steps 4, 5 ran on batches 4, 5 (the poisoned one), were rolled back to ckpt-4, and ran again on 6, 7.
    assert [r[0] for r in rows] == list(range(6)) + list(range(4, 12)), (rows, poison, recovered.stderr[-4000:])
    assert [r[1] for r in rows] == list(range(14)), [r[:2] for r in rows]
    assert [r[2] for r in rows] == [r[2] for r in reference_rows]  # the stream went on past the bad batch
    tensors = checkpoint_tensors(tmp_path / "recover" / "ckpt-12")
    assert tensors["global_step/.ATTRIBUTES/VARIABLE_VALUE"] == 12
    assert tensors["train_batches/.ATTRIBUTES/VARIABLE_VALUE"] == 14
    assert all(np.all(np.isfinite(v)) for v in tensors.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f")
