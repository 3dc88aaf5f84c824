"""Initializes a model's encoder from a checkpoint written by another run (pretraining, say)."""
import tensorflow as tf
from absl import logging


def restore_encoder(model, init_checkpoint: str) -> None:
    """Restores `model.checkpoint_items['encoder']` from the `encoder` object of `init_checkpoint`.

    Args:
      model: a model with `checkpoint_items` holding an 'encoder' (BertPretrainer, BertClassifier),
        already built (its variables exist).
      init_checkpoint: a checkpoint path (prefix) or a directory holding checkpoints (the latest is used).

    Raises:
      FileNotFoundError: no checkpoint at that path.
      ValueError: the checkpoint's encoder does not match the model's; the message names the variable
        whose shape differs, or the model's variables the checkpoint lacks.
    """
    path = _resolve(init_checkpoint)
    if not path or not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"init_checkpoint {init_checkpoint!r} holds no checkpoint")
    stored = dict(tf.train.list_variables(path))
    if not any(name.startswith("encoder/") for name in stored):
        raise ValueError(f"init_checkpoint {path} has no 'encoder' object; its top-level objects are "
                         f"{sorted({name.split('/')[0] for name in stored})}")
    encoder = model.checkpoint_items["encoder"]
    try:
        status = tf.train.Checkpoint(encoder=encoder).read(path)
        status.expect_partial().assert_existing_objects_matched()
    except (ValueError, tf.errors.InvalidArgumentError) as error:
        raise ValueError(f"init_checkpoint {path} does not fit the model's encoder (another architecture?): "
                         f"{error}") from None
    except AssertionError as error:
        raise ValueError(f"init_checkpoint {path} lacks variables of the model's encoder (another "
                         f"architecture?): {error}") from None
    logging.info("Restored the encoder from %s", path)


def _resolve(init_checkpoint: str) -> str | None:
    """A checkpoint prefix: the path itself, or in a directory the latest checkpoint (by state file or mtime)."""
    if not tf.io.gfile.isdir(init_checkpoint):
        return init_checkpoint
    latest = tf.train.latest_checkpoint(init_checkpoint)
    if latest:
        return latest
    indexes = tf.io.gfile.glob(f"{init_checkpoint}/*.index")
    return max(indexes, key=lambda index: tf.io.gfile.stat(index).mtime_nsec)[:-len(".index")] if indexes else None
