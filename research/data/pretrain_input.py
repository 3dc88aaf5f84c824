"""tf.data pipeline for masked-LM pretraining: TFRecord shards of unmasked ids -> masked batches.

Records hold `input_word_ids` and `input_type_ids` (int64 [seq_len]) and, in next-sentence mode,
`next_sentence_labels` (int64 [1]), as written by `research.data.build_pretraining_data`. Masking
happens here, per batch, with a seed that is a function of (seed, batch index): every epoch sees fresh
masks, and the same step always sees the same masks.
"""
import dataclasses
import json
import os

import tensorflow as tf

from research import ops
from research.data import features
from research.data import input_sharding
from research.data import tokenizer

DEFAULT_SPECIAL_TOKEN_IDS = (tokenizer.PAD_ID, tokenizer.UNK_ID, tokenizer.CLS_ID, tokenizer.SEP_ID)


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """How `mask_tokens` masks each batch (see research/ops/mask_tokens.py).

    The ids default to the sentencepiece tokenizer's ([PAD]=0 ... [MASK]=4); `for_tokenizer` takes them
    from any tokenizer (a WordPiece vocabulary puts them elsewhere). `pad_token_id` marks padding
    (input_mask 0); `special_token_ids` are never masked.
    """
    vocab_size: int
    max_predictions_per_seq: int = 20
    mask_token_id: int = tokenizer.MASK_ID
    special_token_ids: tuple = DEFAULT_SPECIAL_TOKEN_IDS
    mask_rate: float = 0.15
    mask_prob: float = 0.8
    random_prob: float = 0.1
    backend: str = "auto"
    pad_token_id: int = tokenizer.PAD_ID

    @classmethod
    def for_tokenizer(cls, text_tokenizer, **kwargs):
        """A MaskingConfig with the special ids of `text_tokenizer` (its `pad_id`, `unk_id`, `cls_id`,
        `sep_id`, `mask_id`); `vocab_size` defaults to the tokenizer's; `kwargs` set the other fields."""
        kwargs.setdefault("vocab_size", text_tokenizer.vocab_size)
        return cls(mask_token_id=text_tokenizer.mask_id, pad_token_id=text_tokenizer.pad_id,
                   special_token_ids=(text_tokenizer.pad_id, text_tokenizer.unk_id, text_tokenizer.cls_id,
                                      text_tokenizer.sep_id), **kwargs)


def list_shards(file_pattern: str) -> list[str]:
    """Sorted files matching a glob (or comma-separated globs); FileNotFoundError names the pattern."""
    files = sorted({path for pattern in file_pattern.split(",") for path in tf.io.gfile.glob(pattern.strip())})
    if not files:
        raise FileNotFoundError(f"no pretraining records match {file_pattern!r}")
    return files


def records_vocab_sizes(file_pattern: str) -> dict[str, int]:
    """{metadata.json path: vocab_size} for each directory of matched records whose metadata.json has one.

    `build_pretraining_data` writes metadata.json beside its shards; records from elsewhere may have
    none, and then there is nothing to check (nor when no file matches yet: reading them says so).
    """
    sizes = {}
    files = {path for pattern in file_pattern.split(",") for path in tf.io.gfile.glob(pattern.strip())}
    for directory in sorted({os.path.dirname(path) for path in files}):
        path = os.path.join(directory, "metadata.json")
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as metadata_file:
                vocab_size = json.load(metadata_file).get("vocab_size")
            if vocab_size is not None:
                sizes[path] = int(vocab_size)
    return sizes


def check_vocab_size(file_pattern: str, vocab_size: int, source: str = "vocab_size") -> None:
    """Fails when the records of `file_pattern` were built with another vocabulary size than `vocab_size`.

    A smaller configured vocabulary fails deep inside a TensorFlow graph at the first step; a larger one
    trains silently on rows no record uses and masks with random ids the tokenizer never produces.

    Raises:
      ValueError: naming both sizes and where each comes from.
    """
    for path, built in records_vocab_sizes(file_pattern).items():
        if built != vocab_size:
            raise ValueError(f"The records {file_pattern!r} were built with a vocabulary of {built} ids ({path}), "
                             f"but {source} is {vocab_size}: set it to {built} (with gin: VOCAB_SIZE = {built}), "
                             f"or rebuild the records with the tokenizer of the model")


def pretrain_dataset(file_pattern: str, *, batch_size: int, seq_len: int, masking: MaskingConfig,
                     is_training: bool = True, seed: int = 0, word_start_table=None,
                     use_next_sentence_label: bool = False, shuffle_buffer_size: int = 10_000,
                     input_context: tf.distribute.InputContext | None = None,
                     sharding: str = "auto") -> tf.data.Dataset:
    """Builds the pretraining dataset.

    Args:
      file_pattern: glob of TFRecord shards.
      batch_size: the global batch size; with `input_context` each pipeline batches its replica's share.
      seq_len: length of the records' id vectors.
      masking: the masking configuration.
      is_training: shuffle files and records and repeat forever; otherwise one pass in file order,
        keeping the last partial batch.
      seed: base seed of shuffling and masking.
      word_start_table: optional bool [vocab_size] (`Tokenizer.word_start_table()`); enables
        whole-word masking.
      use_next_sentence_label: also yield `next_sentence_labels` int32 [batch].
      shuffle_buffer_size: records held by the shuffle buffer.
      input_context: tf.distribute input context: each input pipeline reads its share of the records
        (see `sharding`) and batches per replica.
      sharding: how the input pipelines split the records: 'auto', 'file', 'element' or 'chief'
        (evaluation only); see research/data/input_sharding.py.

    Returns:
      A dataset of dicts: `input_word_ids`, `input_mask`, `input_type_ids` int32 [batch, seq_len];
      `masked_lm_positions`, `masked_lm_ids` int32 [batch, P]; `masked_lm_weights` float32 [batch, P].
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    files = list_shards(file_pattern)
    empty = [path for path in files if tf.io.gfile.stat(path).length == 0]
    if len(empty) == len(files):  # a repeated pipeline over empty files would spin forever
        raise ValueError(f"every shard matching {file_pattern!r} is empty (0 bytes): {', '.join(empty[:5])}")
    _check_first_record(next(path for path in files if path not in empty), seq_len, use_next_sentence_label)
    split = input_sharding.resolve(sharding, len(files), input_context, is_training=is_training, source=file_pattern)
    dataset = input_sharding.shard_files(tf.data.Dataset.from_tensor_slices(files), split, input_context)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if is_training:  # the same seed on every pipeline: element sharding needs one record order everywhere
        dataset = dataset.shuffle(len(files), seed=seed).repeat()
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = input_sharding.shard_elements(dataset, split, input_context)
    if is_training:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed)
    dataset = dataset.batch(batch_size, drop_remainder=is_training)
    dataset = dataset.map(_record_parser(seq_len, use_next_sentence_label, masking.pad_token_id),
                          num_parallel_calls=tf.data.AUTOTUNE)
    table = None if word_start_table is None else tf.constant(word_start_table, tf.bool)
    dataset = dataset.enumerate().map(_batch_masker(masking, seed, table), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _check_first_record(path, seq_len, use_next_sentence_label):
    """Parses the first record of `path` eagerly: a ValueError naming the file and the feature beats an
    InvalidArgumentError from inside the tf.data graph later."""
    # A plain Python reader, not a tf.data op: dataset functions are also traced in graph mode (per-worker
    # datasets of parameter-server training), where tensors have no value to look at.
    records = tf.compat.v1.io.tf_record_iterator(path)
    try:
        first = next(records, None)
    except tf.errors.OpError as error:
        raise ValueError(f"{path}: cannot read the first record: {error.message}") from None
    for serialized in [first] if first is not None else []:
        example = tf.train.Example.FromString(serialized)
        names = [features.INPUT_WORD_IDS, features.INPUT_TYPE_IDS]
        names += [features.NEXT_SENTENCE_LABELS] if use_next_sentence_label else []
        for name in names:
            feature = example.features.feature.get(name)
            if feature is None:
                raise ValueError(f"{path}: the first record has no feature {name!r} (it has "
                                 f"{sorted(example.features.feature)}); is it a pretraining record?")
            expected = 1 if name == features.NEXT_SENTENCE_LABELS else seq_len
            if len(feature.int64_list.value) != expected:
                raise ValueError(f"{path}: feature {name!r} of the first record holds "
                                 f"{len(feature.int64_list.value)} int64 values, expected {expected} (seq_len)")


def _record_parser(seq_len, use_next_sentence_label, pad_id):
    spec = {features.INPUT_WORD_IDS: tf.io.FixedLenFeature([seq_len], tf.int64),
            features.INPUT_TYPE_IDS: tf.io.FixedLenFeature([seq_len], tf.int64)}
    if use_next_sentence_label:
        spec[features.NEXT_SENTENCE_LABELS] = tf.io.FixedLenFeature([1], tf.int64)

    def parse(serialized):
        parsed = {name: tf.cast(value, tf.int32) for name, value in tf.io.parse_example(serialized, spec).items()}
        if use_next_sentence_label:
            parsed[features.NEXT_SENTENCE_LABELS] = parsed[features.NEXT_SENTENCE_LABELS][:, 0]
        parsed[features.INPUT_MASK] = tf.cast(parsed[features.INPUT_WORD_IDS] != pad_id, tf.int32)
        return parsed

    return parse


def _batch_masker(masking, seed, word_start_table):
    def mask(step, batch):
        ids = batch[features.INPUT_WORD_IDS]
        word_starts = None if word_start_table is None else tf.gather(word_start_table, ids)
        masked = ops.mask_tokens(
            ids, tf.stack([tf.constant(seed, tf.int64), step]), vocab_size=masking.vocab_size,
            mask_token_id=masking.mask_token_id, special_token_ids=masking.special_token_ids,
            max_predictions_per_seq=masking.max_predictions_per_seq, mask_rate=masking.mask_rate,
            mask_prob=masking.mask_prob, random_prob=masking.random_prob, word_starts=word_starts,
            backend=masking.backend)
        return {**batch, **masked}

    return mask
