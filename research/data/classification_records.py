"""Sentence classification input from Model Garden's TFRecords (already tokenized examples).

Model Garden's sentence-prediction data (`SentencePredictionDataConfig`, `file_type='tfrecord'`) is a set
of TFRecord files of tf.train.Example protos, one per example, each holding
  input_ids    int64 [seq_len]  word ids, padded at the end
  input_mask   int64 [seq_len]  1 for real tokens, 0 for padding
  segment_ids  int64 [seq_len]  segment A = 0, segment B = 1
  <label_field> int64 [] (classes) or float [] (regression); Model Garden's default name is `label_ids`
  example_id   int64 []         optional, read with include_example_id=True
This module reads them into the batches of `research.data.classification_input`:
  input_word_ids, input_mask, input_type_ids  int32 [batch, L]
  label                                       int32 [batch], or float32 [batch] with label_type='float'
  example_id                                  int32 [batch] (with include_example_id)
where L = seq_len with pad_to='max' (as Model Garden does) or, with pad_to='batch', the end of the
batch's longest example (its last input_mask 1).
"""
import tensorflow as tf

from research.data import features, input_sharding

EXAMPLE_ID = "example_id"  # Model Garden's name for the example's index
LABEL_DTYPES = {"int": tf.int64, "float": tf.float32}
PAD_TO = ("max", "batch")


def record_spec(seq_len: int, label_type: str = "int", label_field: str = "label_ids",
                include_example_id: bool = False) -> dict:
    """The tf.io parsing spec of one Model Garden classification record."""
    if label_type not in LABEL_DTYPES:
        raise ValueError(f"label_type must be one of {sorted(LABEL_DTYPES)}, got {label_type!r}")
    spec = {name: tf.io.FixedLenFeature([seq_len], tf.int64) for name in ("input_ids", "input_mask", "segment_ids")}
    spec[label_field] = tf.io.FixedLenFeature([], LABEL_DTYPES[label_type])
    if include_example_id:
        spec[EXAMPLE_ID] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def _files(input_path: str) -> list:
    """The files of a comma-separated list of paths or globs, in sorted order per pattern."""
    files = []
    for pattern in [p for p in input_path.split(",") if p]:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise ValueError(f"No classification TFRecord file matches {pattern!r} (input_path={input_path!r})")
        files.extend(matched)
    if not files:
        raise ValueError("input_path is empty: give the classification TFRecord files (comma-separated or a glob)")
    return files


def load_records(input_path: str, *, seq_len: int = 128, batch_size: int = 32, is_training: bool = False,
                 label_type: str = "int", label_field: str = "label_ids", include_example_id: bool = False,
                 pad_to: str = "max", seed: int = 0, shuffle_buffer_size: int = 1000,
                 input_context: tf.distribute.InputContext | None = None, sharding: str = "auto") -> tf.data.Dataset:
    """Reads Model Garden classification TFRecords into batches (see the module docstring).

    Args:
      input_path: TFRecord files: comma-separated paths or globs, read one after the other in that order.
      seq_len: the length every record's id lists have (Model Garden's `seq_length`).
      batch_size: the global batch size; with `input_context`, each pipeline batches its replica's share.
      is_training: shuffle (seeded), repeat forever and keep static full batches; otherwise one ordered
        pass keeping the last partial batch.
      label_type: 'int' (int64 labels in the records) or 'float' (float labels, regression).
      label_field: the label's feature name in the records.
      include_example_id: also read `example_id` (int64 [] in every record).
      pad_to: 'max' (every batch seq_len long) or 'batch' (cut to the batch's longest example).
      input_context, sharding: how the input pipelines split the data (research/data/input_sharding.py).

    Raises:
      ValueError: no file matches, or a bad label_type / pad_to. A record lacking a feature of the spec,
        or whose lists are not seq_len long, fails when read (tf.errors.InvalidArgumentError naming it).
    """
    if pad_to not in PAD_TO:
        raise ValueError(f"pad_to must be one of {PAD_TO}, got {pad_to!r}")
    spec = record_spec(seq_len, label_type, label_field, include_example_id)
    files = _files(input_path)
    split = input_sharding.resolve(sharding, len(files), input_context, is_training=is_training, source=input_path)
    dataset = input_sharding.shard_files(tf.data.Dataset.from_tensor_slices(files), split, input_context)
    dataset = input_sharding.shard_elements(dataset.flat_map(tf.data.TFRecordDataset),
                                            split, input_context)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if is_training:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=is_training)

    def to_features(serialized):
        record = tf.io.parse_example(serialized, spec)
        batch = {features.INPUT_WORD_IDS: record["input_ids"], features.INPUT_MASK: record["input_mask"],
                 features.INPUT_TYPE_IDS: record["segment_ids"], features.LABEL: record[label_field]}
        if include_example_id:
            batch[EXAMPLE_ID] = record[EXAMPLE_ID]
        batch = {name: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value for name, value in batch.items()}
        if pad_to == "batch":
            positions = tf.range(1, tf.shape(batch[features.INPUT_MASK])[1] + 1)
            longest = tf.maximum(tf.reduce_max(tf.where(batch[features.INPUT_MASK] > 0, positions, 0)), 1)
            for name in (features.INPUT_WORD_IDS, features.INPUT_MASK, features.INPUT_TYPE_IDS):
                batch[name] = batch[name][:, :longest]
        return batch

    return dataset.map(to_features, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
