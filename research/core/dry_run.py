"""`--dry_run`: check a configuration in seconds, before a long job, without writing anything.

It does what the real run does first, in order, and logs each stage with its time: build the model
(variables and all), restore the task's `init_checkpoint` into it, read one batch of each dataset, and
run the model forward on the first examples of each batch. That catches wrong paths, sizes, shapes,
vocabularies and checkpoints; it does not trace or compile a training step (the real run's first loop
does), which is what made a BERT-Base dry run take minutes.
"""
import time

import tensorflow as tf
from absl import logging

FORWARD_EXAMPLES = 2  # examples of each batch run through the model: shapes are checked all the same


def _stage(what: str, start: float) -> float:
    now = time.monotonic()
    logging.info("dry run: %s (%.1f s)", what, now - start)
    return now


def dry_run(task, strategy: tf.distribute.Strategy):
    """Builds `task`'s model, loads its init_checkpoint, checks one batch of each dataset; returns the model.

    Raises whatever the real run would raise at those stages (errors name the bad value).
    """
    start = time.monotonic()
    logging.info("dry run: building %s's model", type(task).__name__)
    with strategy.scope():
        model = task.build_model()
        start = _stage(f"built {type(model).__name__} with {model.count_params():,} parameters", start)
        init_checkpoint = getattr(task.task_config, "init_checkpoint", "")
        if init_checkpoint:
            task.initialize(model)  # the checkpoint must exist and fit the model
            start = _stage(f"restored init_checkpoint {init_checkpoint}", start)
    for name in ("train_data", "validation_data"):
        data_config = getattr(task.task_config, name, None)
        if data_config is None:
            continue
        logging.info("dry run: reading one batch of %s", name)
        batch = next(iter(task.build_inputs(data_config)))
        shapes = {key: tuple(value.shape) for key, value in batch.items()} if isinstance(batch, dict) else None
        start = _stage(f"{name} gives {shapes}", start)
        features, _ = task.split_inputs(batch)
        model(tf.nest.map_structure(lambda tensor: tensor[:FORWARD_EXAMPLES], features), training=False)
        start = _stage(f"forward pass on {FORWARD_EXAMPLES} examples of {name}", start)
    return model
