"""How the input pipelines of a multi-worker job split a dataset between them.

Under `MultiWorkerMirroredStrategy` (and multi-host TPUs) each worker builds its own input pipeline
from a `tf.distribute.InputContext` (`num_input_pipelines`, `input_pipeline_id`). The pipelines must
see disjoint parts of the data, and a policy says how:

  'file'     each pipeline reads its own subset of the files (every N-th file): the cheapest, and
             it needs at least as many files as pipelines;
  'element'  every pipeline reads every file and keeps every N-th record: works with any number of
             files, at N times the reading;
  'chief'    evaluation only: pipeline 0 (the chief's) reads everything and the others nothing, so
             the result is that of one process; under MultiWorkerMirroredStrategy the other workers
             step along on empty batches;
  'auto'     'file' when there are at least as many files as pipelines, else 'element' (a warning
             for training data: the reading is repeated on every worker).

With one pipeline (one process, MirroredStrategy, parameter-server workers) nothing is split.
"""
import tensorflow as tf
from absl import logging

POLICIES = ("auto", "file", "element", "chief")


def check_policy(policy: str, is_training: bool, field: str = "sharding") -> None:
    """ValueError naming `field` when `policy` is unknown, or 'chief' for training data."""
    if policy not in POLICIES:
        raise ValueError(f"{field} must be one of {POLICIES}, got {policy!r}")
    if policy == "chief" and is_training:
        raise ValueError(f"{field}='chief' is for evaluation data only (is_training=False): training data "
                         "must reach every worker; use 'auto', 'file' or 'element'")


def resolve(policy: str, num_files: int, input_context: tf.distribute.InputContext | None, *,
            is_training: bool, source: str) -> str:
    """The split this pipeline applies: 'none', 'file', 'element' or 'chief'.

    Args:
      policy: one of POLICIES.
      num_files: the files the data comes from (1 for in-memory data read from one file).
      input_context: the pipeline's tf.distribute.InputContext, or None (one pipeline).
      is_training: training data (repeated, shuffled) or evaluation data (one pass).
      source: what the data is (a glob or path), for the messages.

    Raises:
      ValueError: an unknown policy; 'chief' for training data; 'file' with fewer files than pipelines.
    """
    check_policy(policy, is_training)
    pipelines = 1 if input_context is None else input_context.num_input_pipelines
    if pipelines == 1:
        return "none"
    if policy == "auto":
        if num_files >= pipelines:
            return "file"
        if is_training:
            logging.warning("Training data %s: %d file(s) for %d input pipelines, so every worker reads all of them "
                            "and keeps every %d-th record (sharding by element: %dx the reading). Write at least %d "
                            "shards to split the files instead.", source, num_files, pipelines, pipelines,
                            pipelines, pipelines)
        else:
            logging.info("Evaluation data %s: %d file(s) for %d input pipelines: sharding by element",
                         source, num_files, pipelines)
        return "element"
    if policy == "file" and num_files < pipelines:
        raise ValueError(f"{num_files} file(s) match {source!r}, fewer than the {pipelines} input pipelines that "
                         "each need one under sharding='file': write more shards, or use sharding='element' "
                         "(or 'auto')")
    return policy


def shard_files(dataset: tf.data.Dataset, split: str, input_context) -> tf.data.Dataset:
    """Keeps this pipeline's files (a dataset of file names) when `split` is 'file'."""
    if split != "file":
        return dataset
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def shard_elements(dataset: tf.data.Dataset, split: str, input_context) -> tf.data.Dataset:
    """Keeps this pipeline's records (a dataset in the same order on every pipeline) for 'element' and
    'chief'."""
    if split == "element":
        return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if split == "chief" and input_context.input_pipeline_id != 0:
        return dataset.take(0)
    return dataset
