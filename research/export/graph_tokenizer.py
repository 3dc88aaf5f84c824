"""Tokenizers that run inside a TensorFlow graph, and BERT's input layout built from their ids.

An exported SavedModel takes raw strings, so its tokenizer must be TensorFlow ops and tables saved
with it. `GraphTokenizer` is the interface the exporter needs from one; `SentencepieceGraphTokenizer`
(research/export/sentencepiece_graph.py) and `WordPieceGraphTokenizer` (research/export/wordpiece_graph.py)
implement it in plain TensorFlow. Another kind of vocabulary plugs in by subclassing `GraphTokenizer` and
registering a builder with `research.export.tokenizers.register`.

The layout functions mirror `research.data.classification_input.encode_examples`:
  single  [CLS] a [SEP]            input_type_ids 0 ... 0
  pair    [CLS] a [SEP] b [SEP]    input_type_ids 0 for [CLS] a [SEP], 1 for b [SEP]
with the same truncation (a text loses tokens from its end; of a pair, the longer text, b on ties).
"""
import abc

import tensorflow as tf

from research.data import features

MASK_TEXT = "[MASK]"  # what marks a position to fill in fill-mask inputs


class GraphTokenizer(tf.Module, abc.ABC):
    """Text to ids in TensorFlow ops (saved with a SavedModel; runs without this package).

    Subclasses set the attributes below in `__init__` and implement `tokenize`.

    Attributes:
      vocab_size: number of ids.
      pad_id, unk_id, cls_id, sep_id, mask_id: the special tokens' ids.
      vocabulary: string [vocab_size], each id's token text (tracked, so it is saved with the module).
    """
    vocab_size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    vocabulary: tf.Tensor

    @abc.abstractmethod
    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """string [batch] -> int32 ragged [batch, (tokens)], without special tokens."""

    def export_facts(self) -> dict:
        """Settings for the export's export_info.json that the vocabulary file does not hold (none here)."""
        return {}

    def id_to_token(self, ids: tf.Tensor) -> tf.Tensor:
        """int [...] -> string [...]: the token text of each id."""
        return tf.gather(self.vocabulary, ids)

    def special_ids(self) -> tuple[int, ...]:
        """The ids that text never produces and fill-mask never proposes: pad, cls, sep, mask."""
        return (self.pad_id, self.cls_id, self.sep_id, self.mask_id)

    def tokenize_with_masks(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Like `tokenize`, each literal "[MASK]" of a text becoming `mask_id`.

        The text between masks is tokenized piece by piece (so "a [MASK] b" tokenizes "a " and " b").

        Args:
          texts: string [batch].

        Returns:
          int32 ragged [batch, (tokens)].
        """
        parts = tf.strings.split(texts, sep=MASK_TEXT)  # [batch, (parts)], at least one part per text
        tokens = self.tokenize(parts.flat_values)  # [parts, (tokens)]
        is_last = tf.equal(tf.range(tf.shape(parts.flat_values, out_type=tf.int64)[0]) + 1,
                           tf.gather(parts.row_splits[1:], parts.value_rowids()))
        suffix_lengths = 1 - tf.cast(is_last, tf.int64)
        masks = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(suffix_lengths)], tf.constant(self.mask_id, tf.int32)), suffix_lengths)
        per_part = tf.concat([tokens, masks], axis=1)
        return tf.RaggedTensor.from_row_splits(per_part, parts.row_splits).merge_dims(1, 2)


def truncate_pair_lengths(length_a: tf.Tensor, length_b: tf.Tensor, budget: int):
    """The lengths `classification_input.truncate_pair` leaves, in closed form.

    The longer text (b on ties) loses one token at a time until the two fit `budget`: when the shorter
    one holds at most half the budget the longer is cut to the rest; otherwise both end at half the
    budget, a holding the extra token of an odd budget.

    Args:
      length_a, length_b: int [batch], token counts.
      budget: the most tokens a and b may hold together.

    Returns:
      (new_length_a, new_length_b), int [batch] each.
    """
    fits = length_a + length_b <= budget
    shorter = tf.minimum(length_a, length_b)
    shorter_fits_half = 2 * shorter <= budget
    cut_a = tf.where(shorter_fits_half, tf.where(length_a > length_b, budget - length_b, length_a),
                     (budget + 1) // 2)
    cut_b = tf.where(shorter_fits_half, tf.where(length_a > length_b, length_b, budget - length_a),
                     budget // 2)
    return tf.where(fits, length_a, cut_a), tf.where(fits, length_b, cut_b)


def _encoder_inputs(word_ids: tf.RaggedTensor, type_ids: tf.RaggedTensor, pad_id: int) -> dict:
    """Ragged ids to BERT's dense features, padded to the longest example of the batch."""
    dense_ids = word_ids.to_tensor(default_value=pad_id)
    return {features.INPUT_WORD_IDS: dense_ids,
            features.INPUT_MASK: tf.cast(tf.sequence_mask(word_ids.row_lengths(), tf.shape(dense_ids)[1]), tf.int32),
            features.INPUT_TYPE_IDS: type_ids.to_tensor(default_value=0)}


def layout_single(tokens: tf.RaggedTensor, seq_len: int, tokenizer: GraphTokenizer) -> dict:
    """[CLS] a [SEP], truncated to seq_len.

    Args:
      tokens: int32 ragged [batch, (tokens)].
      seq_len: the most tokens per example, [CLS] and [SEP] included (>= 3).

    Returns:
      A dict of input_word_ids, input_mask, input_type_ids: int32 [batch, L], L the longest example.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 to hold [CLS] text [SEP], got {seq_len}")
    tokens = tokens[:, :seq_len - 2]
    batch = tokens.nrows()
    cls = tf.fill([batch, 1], tf.constant(tokenizer.cls_id, tf.int32))
    sep = tf.fill([batch, 1], tf.constant(tokenizer.sep_id, tf.int32))
    word_ids = tf.concat([cls, tokens, sep], axis=1)
    return _encoder_inputs(word_ids, tf.zeros_like(word_ids), tokenizer.pad_id)


def layout_pair(tokens_a: tf.RaggedTensor, tokens_b: tf.RaggedTensor, seq_len: int,
                tokenizer: GraphTokenizer) -> dict:
    """[CLS] a [SEP] b [SEP], truncated to seq_len as `classification_input.truncate_pair` does.

    Args:
      tokens_a, tokens_b: int32 ragged [batch, (tokens)].
      seq_len: the most tokens per example, specials included (>= 5).

    Returns:
      A dict of input_word_ids, input_mask, input_type_ids: int32 [batch, L], L the longest example.
    """
    if seq_len < 5:
        raise ValueError(f"seq_len must be at least 5 to hold [CLS] a [SEP] b [SEP], got {seq_len}")
    length_a, length_b = truncate_pair_lengths(tokens_a.row_lengths(), tokens_b.row_lengths(), seq_len - 3)
    tokens_a = tf.ragged.boolean_mask(tokens_a, tf.ragged.range(tokens_a.row_lengths()) < length_a[:, None])
    tokens_b = tf.ragged.boolean_mask(tokens_b, tf.ragged.range(tokens_b.row_lengths()) < length_b[:, None])
    batch = tokens_a.nrows()
    cls = tf.fill([batch, 1], tf.constant(tokenizer.cls_id, tf.int32))
    sep = tf.fill([batch, 1], tf.constant(tokenizer.sep_id, tf.int32))
    first = tf.concat([cls, tokens_a, sep], axis=1)
    second = tf.concat([tokens_b, sep], axis=1)
    word_ids = tf.concat([first, second], axis=1)
    type_ids = tf.concat([tf.zeros_like(first), tf.ones_like(second)], axis=1)
    return _encoder_inputs(word_ids, type_ids, tokenizer.pad_id)
