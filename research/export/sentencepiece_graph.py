"""A sentencepiece unigram model's tokenization in plain TensorFlow ops (no tensorflow-text).

What sentencepiece does, and what this module does in its place:
1. Normalization (the model's rule, e.g. nmt_nfkc): sentencepiece replaces the longest matching
   character sequence of its rule table. Here each code point is replaced on its own, by a table
   computed when the tokenizer is built (sentencepiece normalizes every code point once). Rules that
   span several code points (a letter followed by a combining accent, NFKC-composed into one) are
   not applied: the only difference from sentencepiece (benchmarks/graph_tokenizer_agreement.py
   measures it on the shipped texts).
2. Whitespace: runs of spaces collapse to one, leading and trailing spaces go, a space prefixes the
   text, and spaces become '▁'.
3. Segmentation: the Viterbi path of the unigram lattice (each piece scores its log probability; a
   character no single-character piece covers is [UNK] scoring the lowest piece score - 10), run on
   each '▁'-word at once (no piece holds a '▁' after its first character, so the path never crosses
   words); consecutive [UNK]s merge into one, as sentencepiece merges them.

Only unigram models trained the way `research.data.tokenizer.train_sentencepiece` trains them are
accepted (no byte fallback, no user-defined symbols, default whitespace handling); anything else is
refused with the setting that differs.
"""
import functools

import numpy as np
import sentencepiece as spm
import tensorflow as tf
from sentencepiece import sentencepiece_model_pb2

from research.data import tokenizer as tokenizer_lib
from research.export.graph_tokenizer import GraphTokenizer

WORD_START = tokenizer_lib.WORD_START
UNK_PENALTY = 10.0  # sentencepiece's kUnkPenalty
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _BYTE, _UNUSED = 1, 2, 3, 4, 6, 5
# Planes 0-3 and 14: planes 4-13 hold no assigned character and 15-16 are private use, which no
# normalization rule changes (checked for nmt_nfkc: every code point it changes lies in planes 0-2).
_NORMALIZED_RANGES = ((0x0, 0x3FFFF), (0xE0000, 0xEFFFF))


def _read_model(model_path: str) -> sentencepiece_model_pb2.ModelProto:
    with tf.io.gfile.GFile(model_path, "rb") as model_file:
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(model_file.read())
    return proto


def _check_supported(proto, model_path: str) -> None:
    """Raises ValueError naming the first setting this module does not reproduce."""
    trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
    unigram = sentencepiece_model_pb2.TrainerSpec.ModelType.UNIGRAM
    problems = []
    if trainer.model_type != unigram:
        problems.append(f"model_type {sentencepiece_model_pb2.TrainerSpec.ModelType.Name(trainer.model_type)} "
                        "(only UNIGRAM is implemented in graph)")
    if trainer.byte_fallback:
        problems.append("byte_fallback=true")
    if not trainer.split_by_whitespace or trainer.treat_whitespace_as_suffix:
        problems.append("non-default whitespace splitting (split_by_whitespace / treat_whitespace_as_suffix)")
    if not (normalizer.add_dummy_prefix and normalizer.remove_extra_whitespaces and normalizer.escape_whitespaces):
        problems.append("non-default normalizer whitespace options (add_dummy_prefix, remove_extra_whitespaces, "
                        "escape_whitespaces must be true)")
    user_defined = [piece.piece for piece in proto.pieces if piece.type == _USER_DEFINED]
    if user_defined:
        problems.append(f"user-defined symbols {user_defined[:5]}")
    if problems:
        raise ValueError(f"sentencepiece model {model_path} cannot be tokenized in graph: {'; '.join(problems)}. "
                         "Train it with research.data.tokenizer.train_sentencepiece (a unigram model).")


@functools.lru_cache(maxsize=4)
def code_point_normalization(model_proto_bytes: bytes) -> tuple[np.ndarray, list[str]]:
    """Every code point the model's normalization rule changes, and what it becomes (planes 0-3 and 14).

    Returns:
      (code_points int64 [n], replacements list of n str; '' for characters the rule removes).
    """
    normalizer = spm.SentencePieceNormalizer(model_proto=model_proto_bytes, add_dummy_prefix=False,
                                             escape_whitespaces=False, remove_extra_whitespaces=False)
    code_points = [c for first, last in _NORMALIZED_RANGES for c in range(first, last + 1)
                   if not 0xD800 <= c <= 0xDFFF]  # no surrogates
    characters = [chr(c) for c in code_points]
    normalized = normalizer.normalize(characters)
    changed = [(c, n) for c, ch, n in zip(code_points, characters, normalized) if n != ch]
    return np.array([c for c, _ in changed], np.int64), [n for _, n in changed]


class SentencepieceGraphTokenizer(GraphTokenizer):
    """A sentencepiece unigram model as TensorFlow tables and ops (see the module docstring).

    Args:
      model_path: the `.model` file (research.data.tokenizer's special ids are not required: they are
        read from the model).
    """

    def __init__(self, model_path: str, name: str | None = None):
        super().__init__(name=name)
        proto = _read_model(model_path)
        _check_supported(proto, model_path)
        self.model_path = model_path
        pieces = [piece.piece for piece in proto.pieces]
        types = np.array([piece.type for piece in proto.pieces])
        scores = np.array([piece.score for piece in proto.pieces], np.float32)
        self.vocab_size = len(pieces)
        self.pad_id = self._special_id(pieces, proto.trainer_spec.pad_piece, "pad")
        self.unk_id = self._special_id(pieces, proto.trainer_spec.unk_piece, "unk")
        self.cls_id = self._special_id(pieces, proto.trainer_spec.bos_piece, "bos ([CLS])")
        self.sep_id = self._special_id(pieces, proto.trainer_spec.eos_piece, "eos ([SEP])")
        self.mask_id = self._special_id(pieces, tokenizer_lib.MASK, "[MASK]")
        self.vocabulary = tf.constant(pieces, tf.string)
        normal = np.flatnonzero(types == _NORMAL)
        self.max_piece_length = max(len(pieces[i]) for i in normal)
        self.unk_score = float(scores[normal].min() - UNK_PENALTY)
        self._scores = tf.constant(np.where(types == _NORMAL, scores, -np.inf).astype(np.float32))
        self._piece_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant([pieces[i] for i in normal]),
                                                tf.constant(normal, tf.int64)), default_value=-1)
        code_points, replacements = code_point_normalization(proto.SerializeToString())
        self._replacements = tf.constant(replacements or [""], tf.string)
        self._normalized_code_points = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(code_points if len(code_points) else [-1], tf.int64),
                                                tf.range(max(len(code_points), 1), dtype=tf.int64)),
            default_value=-1)

    @staticmethod
    def _special_id(pieces, piece, what):
        if piece not in pieces:
            raise ValueError(f"the sentencepiece model has no {what} piece {piece!r}; train it with "
                             "research.data.tokenizer.train_sentencepiece")
        return pieces.index(piece)

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """string [batch] -> string [batch]: normalized, '▁' for spaces, a '▁' in front of non-empty text."""
        characters = tf.strings.unicode_split(texts, "UTF-8", errors="replace")
        code_points = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")
        index = self._normalized_code_points.lookup(tf.cast(code_points.flat_values, tf.int64))
        mapped = tf.where(index >= 0, tf.gather(self._replacements, tf.maximum(index, 0)), characters.flat_values)
        normalized = tf.strings.reduce_join(characters.with_flat_values(mapped), axis=1)
        normalized = tf.strings.regex_replace(normalized, " +", " ")
        normalized = tf.strings.regex_replace(normalized, "^ | $", "")
        escaped = tf.strings.regex_replace(normalized, " ", WORD_START)
        return tf.where(tf.strings.length(escaped) > 0, tf.strings.join([WORD_START, escaped]), escaped)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """string [batch] -> int32 ragged [batch, (tokens)], the ids sentencepiece gives (module docstring)."""
        texts = tf.convert_to_tensor(texts, tf.string)
        normalized = self.normalize(texts)
        words = tf.strings.split(normalized, sep=WORD_START)  # [batch, (words)]; the first is '' before the prefix
        words = tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)
        word_pieces = self._segment(tf.strings.join([WORD_START, words.flat_values]))  # [words, (pieces)]
        tokens = tf.RaggedTensor.from_row_splits(word_pieces, words.row_splits).merge_dims(1, 2)
        return self._merge_unknowns(tokens)

    def _segment(self, words: tf.Tensor) -> tf.RaggedTensor:
        """string [words] -> int32 ragged [words, (pieces)]: each word's Viterbi segmentation."""
        characters = tf.strings.unicode_split(words, "UTF-8", errors="replace")  # [words, (chars)]
        lengths = tf.cast(characters.row_lengths(), tf.int32)
        width = tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], axis=0)), 1)
        dense = characters.to_tensor(default_value="", shape=tf.stack([tf.cast(characters.nrows(), tf.int32), width]))  # [words, width]
        num_words = tf.shape(dense)[0]
        positions = tf.range(width)[tf.newaxis, :]
        in_word = positions < lengths[:, tf.newaxis]
        # Candidate pieces ending at each character, longest first (sentencepiece keeps the earliest start on ties).
        candidate_scores, candidate_ids = [], []
        substring = dense
        for length in range(1, self.max_piece_length + 1):
            if length > 1:
                substring = tf.strings.join([tf.concat([tf.fill([num_words, 1], ""), substring[:, :-1]], axis=1), dense])
            ids = self._piece_ids.lookup(substring)
            valid = in_word & (positions >= length - 1) & (ids >= 0)
            scores = tf.where(valid, tf.gather(self._scores, tf.maximum(ids, 0)), -np.inf)
            if length == 1:  # an unknown character: [UNK] over that one character
                unknown = in_word & (ids < 0)
                scores = tf.where(unknown, self.unk_score, scores)
                ids = tf.where(unknown, tf.cast(self.unk_id, tf.int64), ids)
            candidate_scores.insert(0, scores)
            candidate_ids.insert(0, ids)
        scores = tf.stack(candidate_scores, axis=2)  # [words, width, max_len], index k = length max_len - k
        ids = tf.cast(tf.stack(candidate_ids, axis=2), tf.int32)
        choice_lengths, choice_ids = self._viterbi(scores, ids, width)
        return self._backtrack(choice_lengths, choice_ids, lengths, width)

    def _viterbi(self, scores: tf.Tensor, ids: tf.Tensor, width: tf.Tensor):
        """Best piece ending at each character: (length, id), int32 [words, width] each."""
        max_len = self.max_piece_length
        num_words = tf.shape(scores)[0]
        # window[:, k] = best score of the prefix ending max_len - 1 - k characters back; the newest last.
        window = tf.concat([tf.fill([num_words, max_len - 1], -np.inf), tf.zeros([num_words, 1])], axis=1)
        lengths_of_column = tf.range(max_len, 0, -1)  # column k of the candidates is a piece of this length

        def step(i, window, chosen_lengths, chosen_ids):
            totals = window + scores[:, i, :]
            best = tf.argmax(totals, axis=1, output_type=tf.int32)
            chosen_lengths = chosen_lengths.write(i, tf.gather(lengths_of_column, best))
            chosen_ids = chosen_ids.write(i, tf.gather(ids[:, i, :], best, batch_dims=1))
            window = tf.concat([window[:, 1:], tf.reduce_max(totals, axis=1, keepdims=True)], axis=1)
            return i + 1, window, chosen_lengths, chosen_ids

        arrays = [tf.TensorArray(tf.int32, size=width, element_shape=tf.TensorShape([None])) for _ in range(2)]
        _, _, chosen_lengths, chosen_ids = tf.while_loop(
            lambda i, *_: i < width, step, [tf.constant(0), window, *arrays])
        return tf.transpose(chosen_lengths.stack()), tf.transpose(chosen_ids.stack())

    @staticmethod
    def _backtrack(choice_lengths, choice_ids, lengths, width) -> tf.RaggedTensor:
        """The pieces of the best path, from each word's end back to its start, in reading order."""
        def step(k, position, emitted):
            active = position > 0
            index = tf.maximum(position - 1, 0)
            piece_length = tf.gather(choice_lengths, index, batch_dims=1)
            piece_id = tf.gather(choice_ids, index, batch_dims=1)
            emitted = emitted.write(k, tf.where(active, piece_id, -1))
            return k + 1, tf.where(active, position - piece_length, position), emitted

        emitted = tf.TensorArray(tf.int32, size=width, element_shape=tf.TensorShape([None]))
        _, _, emitted = tf.while_loop(lambda k, *_: k < width, step, [tf.constant(0), lengths, emitted])
        backwards = tf.reverse(tf.transpose(emitted.stack()), axis=[1])  # [words, width], -1 first
        return tf.ragged.boolean_mask(backwards, backwards >= 0)

    def _merge_unknowns(self, tokens: tf.RaggedTensor) -> tf.RaggedTensor:
        """Drops each [UNK] that follows an [UNK] in the same text."""
        values, row_ids = tokens.values, tokens.value_rowids()
        previous = tf.concat([[-1], values[:-1]], axis=0)
        same_row = tf.concat([[False], tf.equal(row_ids[1:], row_ids[:-1])], axis=0)
        repeated = tf.equal(values, self.unk_id) & tf.equal(previous, self.unk_id) & same_row
        return tf.ragged.boolean_mask(tokens, tokens.with_values(~repeated))
