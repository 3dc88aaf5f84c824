"""Initializes a model's pieces from a checkpoint written by another run (Model Garden's `Task.initialize`)."""
import tensorflow as tf
from absl import logging


def _unescape(name: str) -> str:
    """A checkpoint key's object name as given ('next_sentence.pooler_dense' is stored '..' for '.')."""
    return name.replace("..", "\0").replace(".S", "/").replace("\0", ".")


def resolve(init_checkpoint: str) -> str | None:
    """A checkpoint prefix: the path itself, or in a directory its latest checkpoint (by state file or mtime);
    None for a directory that holds no checkpoint."""
    if not tf.io.gfile.isdir(init_checkpoint):
        return init_checkpoint
    latest = tf.train.latest_checkpoint(init_checkpoint)
    if latest:
        return latest
    indexes = tf.io.gfile.glob(f"{init_checkpoint}/*.index")
    return max(indexes, key=lambda index: tf.io.gfile.stat(index).mtime_nsec)[:-len(".index")] if indexes else None


def restore_items(items: dict, init_checkpoint: str, required=()) -> list[str]:
    """Restores each object of `items` from the top-level checkpoint object of the same name.

    As Model Garden's tasks do (`tf.train.Checkpoint(**model.checkpoint_items).read(path)`), with the
    errors named: items the checkpoint does not hold keep their initialization (logged), unless listed in
    `required`.

    Args:
      items: checkpoint name -> trackable (e.g. `model.checkpoint_items`), already built.
      init_checkpoint: a checkpoint prefix, or a directory whose latest checkpoint is used. A directory
        holding no checkpoint is logged and restores nothing, as in Model Garden.
      required: names that must be in the checkpoint.

    Returns:
      The names restored.

    Raises:
      FileNotFoundError: no checkpoint at that path.
      ValueError: a required name is missing, or the checkpoint does not fit the objects (the message
        names the variable whose shape differs, or the variables the checkpoint lacks).
    """
    path = resolve(init_checkpoint)
    if path is None:
        logging.warning("init_checkpoint %s is a directory holding no checkpoint: nothing restored", init_checkpoint)
        return []
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"init_checkpoint {init_checkpoint!r} holds no checkpoint")
    stored = {_unescape(name.split("/")[0]) for name, _ in tf.train.list_variables(path)}
    missing_required = sorted(set(required) - stored)
    if missing_required:
        raise ValueError(f"init_checkpoint {path} has no {missing_required} object; its top-level objects are "
                         f"{sorted(stored)}")
    present = {name: item for name, item in items.items() if name in stored}
    absent = sorted(set(items) - set(present))
    if absent:
        logging.warning("init_checkpoint %s holds no %s: they keep their initialization", path, absent)
    if not present:
        return []
    try:
        status = tf.train.Checkpoint(**present).read(path)
        status.expect_partial().assert_existing_objects_matched()
    except (ValueError, tf.errors.InvalidArgumentError) as error:
        raise ValueError(f"init_checkpoint {path} does not fit the model's {sorted(present)} (another "
                         f"architecture?): {error}") from None
    except AssertionError as error:
        raise ValueError(f"init_checkpoint {path} lacks variables of the model's {sorted(present)} (another "
                         f"architecture?): {error}") from None
    logging.info("Restored %s from %s", sorted(present), path)
    return sorted(present)
