"""research.main with test instrumentation, for the reliability tests (run as a subprocess).

Environment:
  RELIABILITY_IDS_LOG: append one line per training step, `<global_step> <train_batches> <id> ...`, the
    ids being each example's id token (position 1 of input_word_ids), when the batch is consumed.
  RELIABILITY_KILL_AT_STEP: send this process RELIABILITY_SIGNAL (default KILL; or TERM) when the batch
    of that global step is consumed; the time it was sent goes to RELIABILITY_IDS_LOG + '.signal'.
  RELIABILITY_CRASH_IN_SAVE: when the checkpoint of that step has been written, truncate its data file
    to half (a write cut short) and SIGKILL this process before the `checkpoint` state file names it.
  RELIABILITY_POISON_ID: a batch holding this id at position 1 gets a NaN loss (and NaN gradients),
    standing for a record that makes training diverge.
Everything else is research.main's flags.
"""
import glob
import os
import signal
import time

import tensorflow as tf
from absl import app
from tensorflow.python.checkpoint import checkpoint_management

from research import main as research_main
from research.core import base_trainer
from research.data import features
from research.tasks import masked_lm

_LOG = os.environ.get("RELIABILITY_IDS_LOG")
_KILL_AT = int(os.environ.get("RELIABILITY_KILL_AT_STEP", "-1"))
_POISON = int(os.environ.get("RELIABILITY_POISON_ID", "-1"))
_SIGNAL = getattr(signal, "SIG" + os.environ.get("RELIABILITY_SIGNAL", "KILL"))
_CRASH_IN_SAVE = int(os.environ.get("RELIABILITY_CRASH_IN_SAVE", "-1"))


def _record(step, batches, ids):
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(" ".join(str(int(v)) for v in [step, batches, *ids.numpy().tolist()]) + "\n")
        log.flush()
        os.fsync(log.fileno())
    if int(step) == _KILL_AT:
        with open(_LOG + ".signal", "w", encoding="utf-8") as stamp:
            stamp.write(repr(time.time()))
        os.kill(os.getpid(), _SIGNAL)


def example_ids(batch):
    """int32 [batch]: the unmasked token at position 1 of each example (masking may have replaced it)."""
    hit = (batch[features.MASKED_LM_POSITIONS] == 1) & (batch[features.MASKED_LM_WEIGHTS] > 0)
    original = tf.reduce_sum(tf.where(hit, batch[features.MASKED_LM_IDS], 0), axis=1)
    return tf.where(tf.reduce_any(hit, axis=1), original, batch[features.INPUT_WORD_IDS][:, 1])


_next_train_inputs = base_trainer.Trainer.next_train_inputs


def next_train_inputs(self, iterator):
    inputs = _next_train_inputs(self, iterator)
    if _LOG:
        local = self.strategy.experimental_local_results(inputs)
        ids = tf.concat([example_ids(batch) for batch in local], 0)
        tf.py_function(_record, [self.global_step, self.train_batches, ids], [])
    return inputs


_build_losses = masked_lm.MaskedLMTask.build_losses


def build_losses(self, labels, model_outputs, aux_losses=None):
    loss = _build_losses(self, labels, model_outputs, aux_losses)
    poisoned = tf.reduce_any(example_ids(labels) == _POISON)
    return loss * tf.where(poisoned, float("nan"), 1.0)


_update_state = checkpoint_management.update_checkpoint_state_internal


def update_checkpoint_state_internal(save_dir, model_checkpoint_path, *args, **kwargs):
    if model_checkpoint_path.endswith(f"ckpt-{_CRASH_IN_SAVE}"):
        for data in glob.glob(model_checkpoint_path + ".data-*"):
            os.truncate(data, os.path.getsize(data) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return _update_state(save_dir, model_checkpoint_path, *args, **kwargs)


base_trainer.Trainer.next_train_inputs = next_train_inputs
checkpoint_management.update_checkpoint_state_internal = update_checkpoint_state_internal
if _POISON >= 0:
    masked_lm.MaskedLMTask.build_losses = build_losses

if __name__ == "__main__":
    app.run(research_main.main)
