"""Sentence (pair) classification input: a TSV file to batches of BERT features.

The file has no header; each line is `label<TAB>text` or, for sentence pairs, `label<TAB>text_a<TAB>text_b`
(every line of a file has the same number of columns; empty lines are skipped). Examples are tokenized
once, in Python, when the dataset is built, and laid out the way BERT expects:
  single  [CLS] a [SEP]            input_type_ids 0 ... 0
  pair    [CLS] a [SEP] b [SEP]    input_type_ids 0 for [CLS] a [SEP], 1 for b [SEP]
A text too long for `seq_len` loses tokens from its end; for a pair, the longer of a and b loses one
token at a time (b on ties) until the pair fits.

Each batch is a dict (see `research.data.features`):
  input_word_ids  int32 [batch, L]  padded with the tokenizer's pad_id
  input_mask      int32 [batch, L]  1 for real tokens, 0 for padding
  input_type_ids  int32 [batch, L]
  label           int32 [batch], or float32 [batch] with label_type='float' (regression)
where L = seq_len with pad_to='max' (as Model Garden does), or the longest example of the batch with
pad_to='batch' (much faster fine-tuning on short sentences, most of all with `bucket_boundaries`).
"""
import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

from research.data import features, input_sharding

LABEL_TYPES = {"int": (int, tf.int32), "float": (float, tf.float32)}
PAD_TO = ("max", "batch")
_LENGTH = "length"  # internal: real tokens per example, dropped before batches leave the pipeline


@dataclasses.dataclass(frozen=True)
class Example:
    """One labeled sentence (text_b None) or sentence pair."""
    label: int | float
    text_a: str
    text_b: str | None = None


def read_examples(path, label_type="int", num_classes=None):
    """Reads a classification TSV into a list of `Example`s, in file order.

    Args:
      path: the TSV file, UTF-8, `label<TAB>text` or `label<TAB>text_a<TAB>text_b` per line.
      label_type: 'int' (classes) or 'float' (regression; labels must be finite).
      num_classes: with 'int' labels, every label must lie in [0, num_classes); None checks nothing.

    Raises:
      ValueError: naming the file and line, for a wrong column count, a label that does not parse or
        lies out of range; or when the file holds no example.
    """
    _check_label_type(label_type, num_classes)
    path = os.fspath(path)
    examples, num_columns = [], None
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            where = f"{path}, line {line_number}"
            if len(fields) not in (2, 3) or num_columns not in (None, len(fields)):
                expected = num_columns or "2 (label, text) or 3 (label, text_a, text_b)"
                raise ValueError(f"{where}: expected {expected} tab-separated columns, got {len(fields)}")
            num_columns = len(fields)
            label = _parse_label(fields[0], where, label_type, num_classes)
            examples.append(Example(label, *fields[1:]))
    if not examples:
        raise ValueError(f"{path}: no examples (the file is empty)")
    return examples


def _check_label_type(label_type, num_classes):
    if label_type not in LABEL_TYPES:
        raise ValueError(f"label_type must be one of {sorted(LABEL_TYPES)}, got {label_type!r}")
    if num_classes is not None and (label_type != "int" or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int and only goes with label_type='int', "
                         f"got num_classes={num_classes!r}, label_type={label_type!r}")


def _parse_label(text, where, label_type, num_classes):
    try:
        label = LABEL_TYPES[label_type][0](text)
    except ValueError:
        raise ValueError(f"{where}: label {text!r} is not a{'n' if label_type == 'int' else ''} "
                         f"{label_type}") from None
    if label_type == "float" and not math.isfinite(label):
        raise ValueError(f"{where}: label {text!r} is not finite")
    if num_classes is not None and not 0 <= label < num_classes:
        raise ValueError(f"{where}: label {label} is outside [0, {num_classes})")
    return label


def split_examples(examples, validation_fraction=0.2, seed=0):
    """Splits `examples` into disjoint (train, validation) lists, deterministically for a given seed.

    round(len(examples) * validation_fraction) examples, drawn at random, are held out; both lists keep
    the input order. Raises ValueError when either part would be empty.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    num_validation = round(len(examples) * validation_fraction)
    if not 0 < num_validation < len(examples):
        raise ValueError(f"cannot hold out {validation_fraction} of {len(examples)} examples "
                         "and leave both parts non-empty")
    held_out = np.zeros(len(examples), dtype=bool)
    held_out[np.random.default_rng(seed).permutation(len(examples))[:num_validation]] = True
    train = [e for e, h in zip(examples, held_out) if not h]
    validation = [e for e, h in zip(examples, held_out) if h]
    return train, validation


def truncate_pair(tokens_a, tokens_b, max_tokens):
    """Returns copies of the two token lists, the longer one (b on ties) shortened by one token at a
    time from its end until len(a) + len(b) <= max_tokens."""
    tokens_a, tokens_b = list(tokens_a), list(tokens_b)
    while len(tokens_a) + len(tokens_b) > max_tokens:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
    return tokens_a, tokens_b


def encode_examples(examples, tokenizer, seq_len):
    """Tokenizes and lays out `examples` (see the module docstring) with the tokenizer's `cls_id`,
    `sep_id` and `pad_id`.

    Returns:
      (input_word_ids, input_type_ids, lengths): int32 [num_examples, seq_len] twice, padded with pad_id
      and 0, and int32 [num_examples], the number of real tokens of each example.
    """
    min_len = 3 if all(e.text_b is None for e in examples) else 5
    if seq_len < min_len:
        raise ValueError(f"seq_len must be at least {min_len} to hold the special tokens and some "
                         f"text, got {seq_len}")
    encode = getattr(tokenizer, "encode_batch", None) or (lambda texts: [tokenizer.encode(t) for t in texts])
    tokens_a = encode([e.text_a for e in examples])
    tokens_b = encode([e.text_b or "" for e in examples])
    cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
    word_ids = np.full((len(examples), seq_len), tokenizer.pad_id, dtype=np.int32)
    type_ids = np.zeros((len(examples), seq_len), dtype=np.int32)
    lengths = np.zeros(len(examples), dtype=np.int32)
    for i, (example, a, b) in enumerate(zip(examples, tokens_a, tokens_b)):
        if example.text_b is None:
            ids, num_a = [cls_id, *a[:seq_len - 2], sep_id], None
        else:
            a, b = truncate_pair(a, b, seq_len - 3)
            ids, num_a = [cls_id, *a, sep_id, *b, sep_id], len(a) + 2
        word_ids[i, :len(ids)] = ids
        if num_a is not None:
            type_ids[i, num_a:len(ids)] = 1
        lengths[i] = len(ids)
    return word_ids, type_ids, lengths


def build_dataset(examples, tokenizer, *, seq_len=128, batch_size=32, is_training=False,
                  pad_to="max", bucket_boundaries=None, label_type="int", seed=0,
                  shuffle_buffer_size=None, input_context=None, sharding="auto"):
    """Builds the tf.data pipeline of classification batches (see the module docstring).

    Args:
      examples: a non-empty list of `Example`s, e.g. from `read_examples` or `split_examples`.
      tokenizer: a `research.data.tokenizer.Tokenizer` or `research.data.wordpiece.WordPieceTokenizer`
        (anything with `encode(text) -> list[int]` and the ids `cls_id`, `sep_id`, `pad_id`).
      seq_len: the most tokens an example holds, [CLS] and [SEP]s included.
      batch_size: the global batch size; with `input_context`, each pipeline batches its replica's share.
      is_training: shuffle (seeded by `seed`, reshuffled each epoch), repeat forever and drop the last
        partial batch (static batch size). Otherwise no shuffle, one pass, and the last partial batch kept.
      pad_to: 'max' pads every batch to seq_len; 'batch' to the longest example of the batch.
      bucket_boundaries: with pad_to='batch', increasing lengths in (1, seq_len] along which examples of
        similar length are batched together (`tf.data.Dataset.bucket_by_sequence_length`); None: no buckets.
      label_type: 'int' (labels int32 [batch]) or 'float' (float32 [batch]).
      shuffle_buffer_size: None shuffles the whole (in-memory) dataset.
      input_context: a `tf.distribute.InputContext` to shard by, or None.
      sharding: how the input pipelines split the examples (held in memory, so by element):
        'auto' or 'element' (each keeps every N-th example), or 'chief' (evaluation only: pipeline 0
        keeps them all); see research/data/input_sharding.py.

    Returns:
      A `tf.data.Dataset` of dicts of input_word_ids, input_mask, input_type_ids (int32 [batch, L]) and
      label (int32 or float32 [batch]).
    """
    _check_build_args(examples, pad_to, bucket_boundaries, seq_len, label_type)
    word_ids, type_ids, lengths = encode_examples(examples, tokenizer, seq_len)
    labels = np.array([e.label for e in examples], dtype=LABEL_TYPES[label_type][1].as_numpy_dtype)
    dataset = tf.data.Dataset.from_tensor_slices({
        features.INPUT_WORD_IDS: word_ids, features.INPUT_TYPE_IDS: type_ids,
        features.LABEL: labels, _LENGTH: lengths})
    if sharding == "file":
        raise ValueError("sharding='file' does not apply to classification data (one file, read into memory): "
                         "use 'auto' or 'element' (every pipeline keeps every N-th example) or 'chief'")
    split = input_sharding.resolve("element" if sharding == "auto" else sharding, 1, input_context,
                                   is_training=is_training, source=f"{len(examples)} examples")
    dataset = input_sharding.shard_elements(dataset, split, input_context)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if is_training:
        dataset = dataset.shuffle(shuffle_buffer_size or len(examples), seed=seed,
                                  reshuffle_each_iteration=True).repeat()
    if bucket_boundaries:
        dataset = dataset.bucket_by_sequence_length(
            lambda example: example[_LENGTH], list(bucket_boundaries),
            [batch_size] * (len(bucket_boundaries) + 1), no_padding=True,
            drop_remainder=is_training)
    else:
        dataset = dataset.batch(batch_size, drop_remainder=is_training)
    finish = _trim_to_longest if pad_to == "batch" else (lambda batch: batch)
    pad_id = tokenizer.pad_id
    dataset = dataset.map(lambda batch: _add_mask(finish(batch), pad_id), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def load_dataset(input_path, tokenizer, *, label_type="int", num_classes=None, **kwargs):
    """`read_examples(input_path, label_type, num_classes)`, then `build_dataset` with `kwargs`."""
    examples = read_examples(input_path, label_type=label_type, num_classes=num_classes)
    return build_dataset(examples, tokenizer, label_type=label_type, **kwargs)


def _check_build_args(examples, pad_to, bucket_boundaries, seq_len, label_type):
    _check_label_type(label_type, None)
    if not examples:
        raise ValueError("no examples to build a dataset from")
    if pad_to not in PAD_TO:
        raise ValueError(f"pad_to must be one of {PAD_TO}, got {pad_to!r}")
    if bucket_boundaries is None:
        return
    bounds = list(bucket_boundaries)
    if pad_to != "batch":
        raise ValueError("bucket_boundaries only go with pad_to='batch'")
    if not bounds or bounds != sorted(set(bounds)) or bounds[0] < 2 or bounds[-1] > seq_len:
        raise ValueError(f"bucket_boundaries must strictly increase within [2, seq_len={seq_len}], "
                         f"got {bounds}")


def _trim_to_longest(batch):
    """Cuts the int32 [batch, seq_len] features to [batch, L], L the longest example of the batch."""
    longest = tf.reduce_max(batch[_LENGTH])
    batch = dict(batch)
    for name in (features.INPUT_WORD_IDS, features.INPUT_TYPE_IDS):
        batch[name] = batch[name][:, :longest]
    return batch


def _add_mask(batch, pad_id):
    """Drops the internal length and adds input_mask int32 [batch, L], 1 where input_word_ids != pad_id."""
    batch = {name: value for name, value in batch.items() if name != _LENGTH}
    batch[features.INPUT_MASK] = tf.cast(
        tf.not_equal(batch[features.INPUT_WORD_IDS], pad_id), tf.int32)
    return batch
