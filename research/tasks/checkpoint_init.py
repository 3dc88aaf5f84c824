"""Initializes a model's encoder from a checkpoint written by another run (pretraining, say)."""
from research.core import checkpoint_restore


def restore_encoder(model, init_checkpoint: str) -> None:
    """Restores `model.checkpoint_items['encoder']` from the `encoder` object of `init_checkpoint`.

    Args:
      model: a model with `checkpoint_items` holding an 'encoder' (BertPretrainer, BertClassifier),
        already built (its variables exist).
      init_checkpoint: a checkpoint path (prefix) or a directory holding checkpoints (the latest is used;
        a directory with none is logged and skipped, as in Model Garden).

    Raises:
      FileNotFoundError: no checkpoint at that path.
      ValueError: the checkpoint has no encoder, or its encoder does not match the model's; the message
        names the variable whose shape differs, or the model's variables the checkpoint lacks.
    """
    items = {"encoder": model.checkpoint_items["encoder"]} if model is not None else {}
    checkpoint_restore.restore_items(items, init_checkpoint, required=("encoder",))
