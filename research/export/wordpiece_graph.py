"""BERT's WordPiece tokenization of a `vocab.txt` in plain TensorFlow ops (no tensorflow-text).

It computes what `research.data.wordpiece.WordPieceTokenizer` (Hugging Face `tokenizers`: BertNormalizer,
BertPreTokenizer, WordPiece) computes, so that a model fine-tuned on that tokenizer's ids serves raw strings:
1. Special tokens: [PAD], [UNK], [CLS], [SEP] and [MASK] written literally in the raw text are their ids
   (matched before any normalization, as `tokenizers` matches added special tokens).
2. Normalization and splitting, one code point at a time, by a table built here in Python with
   `unicodedata` (core TensorFlow has no Unicode normalization op): NUL, U+FFFD and control characters
   (categories Cc, Cf, Co; tab, newline and carriage return excepted) are removed (unassigned code points
   stay, as in `tokenizers`; transformers' pure-Python BertTokenizer removes them too); whitespace
   becomes a space; CJK ideographs get a space on each side; with strip_accents, the NFD decomposition
   without its nonspacing marks (Mn); with lower_case, the lower case; then punctuation (ASCII
   punctuation and categories P*) gets a space on each side. The table is a sorted list of code-point
   runs that behave alike, applied with `tf.searchsorted`; the text is then split on spaces into words.
3. WordPiece, word by word: a word of more than 100 characters is [UNK]; otherwise the longest vocabulary
   piece at its start, then the longest '##' continuation piece after it, and so on (greedy longest match
   first); a word with a position no piece matches is one [UNK].

Two approximations, both outside what the per-code-point table can express and rare in text: NFD's
canonical reordering of several combining marks on one letter (only the order of the marks that are not
removed could differ), and characters whose Unicode category differs between Python's `unicodedata`
(Unicode 14 in Python 3.11) and the Unicode version the `tokenizers` build uses (characters assigned
since).
"""
import functools
import unicodedata

import numpy as np
import tensorflow as tf

from research.data import wordpiece
from research.export.graph_tokenizer import GraphTokenizer

# Rust's char::is_whitespace (Unicode White_Space), which `tokenizers` uses; the Cc ones among them
# (\v, \f, U+0085) are removed as control characters before this applies.
_WHITESPACE = frozenset([0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028,
                         0x2029, 0x202F, 0x205F, 0x3000])
# The CJK blocks BERT splits into single characters.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_KEEP, _ISOLATE, _REPLACE = 0, 1, 2  # what a code-point run does (see code_point_runs)
_SEGMENT_MARK = b"\xff"  # never in valid UTF-8: delimits the special tokens found in the raw text


def _is_control(code_point: int) -> bool:
    return code_point in (0, 0xFFFD) or (code_point not in (0x9, 0xA, 0xD)
                                         and unicodedata.category(chr(code_point)) in ("Cc", "Cf", "Co"))


def _is_cjk(code_point: int) -> bool:
    return any(first <= code_point <= last for first, last in _CJK_RANGES)


def _is_punctuation(character: str) -> bool:
    code_point = ord(character)
    return (33 <= code_point <= 47 or 58 <= code_point <= 64 or 91 <= code_point <= 96 or 123 <= code_point <= 126
            or unicodedata.category(character).startswith("P"))


def normalize_character(code_point: int, lower_case: bool, strip_accents: bool) -> str:
    """What BERT's normalization and pre-tokenization make of one code point, spaces marking word breaks.

    E.g. 'É' -> 'e' (uncased), '!' -> ' ! ', '中' -> ' 中 ', '\\t' -> ' ', a control character -> ''.
    """
    if _is_control(code_point) or 0xD800 <= code_point <= 0xDFFF:  # surrogates: never decoded from UTF-8
        return ""
    if code_point in _WHITESPACE:
        return " "
    text = chr(code_point)
    if strip_accents:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    if lower_case:
        text = "".join(c.lower() for c in text)
    text = "".join(" " if ord(c) in _WHITESPACE else f" {c} " if _is_punctuation(c) else c for c in text)
    return f" {text} " if _is_cjk(code_point) else text


@functools.lru_cache(maxsize=4)
def code_point_runs(lower_case: bool, strip_accents: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The normalization table: maximal runs of code points that behave alike.

    Returns:
      (starts int32 [runs], sorted first code point of each run; kinds int32 [runs]: _KEEP (the character
      stays), _ISOLATE (a space on each side) or _REPLACE (becomes replacements[index]); indexes int32
      [runs]; replacements list of str, '' for removed characters).
    """
    starts, kinds, indexes, replacements, index_of = [], [], [], [], {}
    previous = None
    for code_point in range(0x110000):
        character = chr(code_point) if not 0xD800 <= code_point <= 0xDFFF else ""
        normalized = normalize_character(code_point, lower_case, strip_accents)
        if normalized == character:
            behaviour = (_KEEP, 0)
        elif character and normalized == f" {character} ":
            behaviour = (_ISOLATE, 0)
        else:
            if normalized not in index_of:
                index_of[normalized] = len(replacements)
                replacements.append(normalized)
            behaviour = (_REPLACE, index_of[normalized])
        if behaviour != previous:
            starts.append(code_point)
            kinds.append(behaviour[0])
            indexes.append(behaviour[1])
            previous = behaviour
    return (np.array(starts, np.int32), np.array(kinds, np.int32), np.array(indexes, np.int32), replacements)


class WordPieceGraphTokenizer(GraphTokenizer):
    """A WordPiece `vocab.txt` as TensorFlow tables and ops (see the module docstring).

    Args:
      vocab_file: BERT's `vocab.txt`, one token per line; it must hold [PAD], [UNK], [CLS], [SEP], [MASK].
      lower_case: lower-case the text ('uncased' models).
      strip_accents: remove accents (NFD without nonspacing marks); None follows lower_case, as in BERT.

    Raises:
      FileNotFoundError: no such vocabulary file.
      ValueError: a special token missing from the vocabulary (named), or a bad flag.
    """

    def __init__(self, vocab_file: str, lower_case: bool = True, strip_accents: bool | None = None,
                 name: str | None = None):
        super().__init__(name=name)
        if not isinstance(lower_case, bool):
            raise ValueError(f"WordPieceGraphTokenizer: lower_case must be True or False, got {lower_case!r}")
        if strip_accents is not None and not isinstance(strip_accents, bool):
            raise ValueError(f"WordPieceGraphTokenizer: strip_accents must be True, False or None, "
                             f"got {strip_accents!r}")
        tokens = wordpiece.read_vocab(vocab_file)
        ids = {token: i for i, token in enumerate(tokens)}  # a duplicated token keeps its last id, as BERT's
        missing = [token for token in wordpiece.SPECIAL_TOKENS if token not in ids]
        if missing:
            raise ValueError(f"WordPiece vocabulary {vocab_file} lacks the special token(s) {missing}")
        self.model_path = vocab_file
        self.lower_case = lower_case
        self.strip_accents = lower_case if strip_accents is None else strip_accents
        self.vocab_size = len(tokens)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            ids[token] for token in wordpiece.SPECIAL_TOKENS)
        self.vocabulary = tf.constant(tokens, tf.string)
        prefix = wordpiece.CONTINUATION
        pieces = [token for token in ids if token]
        self.max_piece_length = max(len(token[len(prefix):]) if token.startswith(prefix) else len(token)
                                    for token in pieces)
        self._piece_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(pieces), tf.constant([ids[p] for p in pieces], tf.int64)),
            default_value=-1)
        self._special_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(wordpiece.SPECIAL_TOKENS)),
                                                tf.constant([ids[t] for t in wordpiece.SPECIAL_TOKENS], tf.int64)),
            default_value=-1)
        self._special_pattern = "|".join(token.replace("[", r"\[").replace("]", r"\]")
                                         for token in wordpiece.SPECIAL_TOKENS)
        starts, kinds, indexes, replacements = code_point_runs(self.lower_case, self.strip_accents)
        self._run_starts = tf.constant(starts)
        self._run_kinds = tf.constant(kinds)
        self._run_indexes = tf.constant(indexes)
        self._replacements = tf.constant(replacements or [""], tf.string)

    def export_facts(self) -> dict:
        """lower_case and strip_accents: the normalization the vocab.txt does not say."""
        return {"lower_case": self.lower_case, "strip_accents": self.strip_accents}

    def split_words(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """string [batch] -> string ragged [batch, (words)]: normalized words and punctuation marks."""
        characters = tf.strings.unicode_split(texts, "UTF-8", errors="replace")
        code_points = tf.strings.unicode_decode(texts, "UTF-8", errors="replace").flat_values
        run = tf.searchsorted(self._run_starts, code_points, side="right") - 1
        kind = tf.gather(self._run_kinds, run)
        isolated = tf.strings.join([" ", characters.flat_values, " "])
        replaced = tf.gather(self._replacements, tf.gather(self._run_indexes, run))
        mapped = tf.where(tf.equal(kind, _REPLACE), replaced,
                          tf.where(tf.equal(kind, _ISOLATE), isolated, characters.flat_values))
        normalized = tf.strings.reduce_join(characters.with_flat_values(mapped), axis=1)
        words = tf.strings.split(normalized, sep=" ")
        return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """string [batch] -> int32 ragged [batch, (tokens)], the ids WordPieceTokenizer.encode gives."""
        texts = tf.convert_to_tensor(texts, tf.string)
        marked = tf.strings.regex_replace(texts, self._special_pattern, _SEGMENT_MARK + rb"\0" + _SEGMENT_MARK)
        segments = tf.strings.split(marked, sep=_SEGMENT_MARK)  # [batch, (segments)]
        special = self._special_ids.lookup(segments.flat_values)  # -1: text between special tokens
        words = self.split_words(tf.where(special >= 0, "", segments.flat_values))  # [segments, (words)]
        pieces = self.word_pieces(words.flat_values)  # [words, (pieces)]
        text_ids = tf.RaggedTensor.from_row_splits(pieces, words.row_splits).merge_dims(1, 2)
        special_ids = tf.ragged.boolean_mask(tf.cast(special, tf.int32)[:, tf.newaxis], special[:, tf.newaxis] >= 0)
        per_segment = tf.concat([text_ids, special_ids], axis=1)  # one of the two is empty in each row
        return tf.RaggedTensor.from_row_splits(per_segment, segments.row_splits).merge_dims(1, 2)

    def tokenize_with_masks(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """`tokenize`: a literal "[MASK]" already becomes mask_id there."""
        return self.tokenize(texts)

    def word_pieces(self, words: tf.Tensor) -> tf.RaggedTensor:
        """string [words] (normalized, no spaces) -> int32 ragged [words, (pieces)]: greedy longest match first.

        A word that is a vocabulary piece is that piece (the longest match at its start). The others go
        through a loop over piece positions, each step on the words not yet finished only: every candidate
        length 1..max_piece_length is looked up at once, the longest found is taken.
        """
        lengths = tf.strings.length(words, unit="UTF8_CHAR")
        num_words = tf.shape(words)[0]
        candidate_lengths = tf.range(1, self.max_piece_length + 1)
        short = lengths <= wordpiece.MAX_INPUT_CHARS_PER_WORD
        whole_ids = self._piece_ids.lookup(words)
        whole = short & (whole_ids >= 0)
        first = tf.cast(tf.where(short & ~whole)[:, 0], tf.int32)

        def step(k, active, position, failed, emitted_words, emitted_ids):
            word = tf.gather(words, active)
            length = tf.gather(lengths, active)
            shape = [tf.shape(active)[0], self.max_piece_length]
            starts = tf.broadcast_to(position[:, tf.newaxis], shape)
            candidates = tf.strings.substr(tf.broadcast_to(word[:, tf.newaxis], shape), starts,
                                           tf.broadcast_to(candidate_lengths, shape), unit="UTF8_CHAR")
            keys = tf.where(starts > 0, tf.strings.join([wordpiece.CONTINUATION, candidates]), candidates)
            ids = self._piece_ids.lookup(keys)
            found = (ids >= 0) & (starts + candidate_lengths <= length[:, tf.newaxis])
            best = tf.reduce_max(tf.where(found, candidate_lengths, 0), axis=1)  # 0: nothing matches here
            matched = best > 0
            best_ids = tf.gather(ids, tf.maximum(best - 1, 0), batch_dims=1)
            emitted_words = emitted_words.write(k, tf.boolean_mask(active, matched))
            emitted_ids = emitted_ids.write(k, tf.cast(tf.boolean_mask(best_ids, matched), tf.int32))
            failed = tf.tensor_scatter_nd_update(failed, tf.boolean_mask(active, ~matched)[:, tf.newaxis],
                                                 tf.ones_like(tf.boolean_mask(active, ~matched), tf.bool))
            position = position + best
            going_on = matched & (position < length)
            return k + 1, tf.boolean_mask(active, going_on), tf.boolean_mask(position, going_on), failed, \
                emitted_words, emitted_ids

        arrays = [tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False,
                                 element_shape=tf.TensorShape([None])) for _ in range(2)]
        arrays[0] = arrays[0].write(0, tf.cast(tf.where(whole)[:, 0], tf.int32))
        arrays[1] = arrays[1].write(0, tf.cast(tf.boolean_mask(whole_ids, whole), tf.int32))
        _, _, _, failed, emitted_words, emitted_ids = tf.while_loop(
            lambda k, active, *_: tf.size(active) > 0, step,
            [tf.constant(1), first, tf.zeros_like(first), tf.zeros([num_words], tf.bool), *arrays],
            shape_invariants=[tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None]),
                              tf.TensorShape([None]), tf.TensorShape(None), tf.TensorShape(None)])
        word_of = emitted_words.concat()
        piece_ids = emitted_ids.concat()
        unknown = failed | ~short
        kept = ~tf.gather(unknown, word_of)
        unknown_words = tf.cast(tf.where(unknown)[:, 0], tf.int32)
        word_of = tf.concat([tf.boolean_mask(word_of, kept), unknown_words], axis=0)
        piece_ids = tf.concat([tf.boolean_mask(piece_ids, kept), tf.fill(tf.shape(unknown_words), self.unk_id)],
                              axis=0)
        order = tf.argsort(word_of, stable=True)  # pieces were emitted step by step: stable keeps their order
        return tf.RaggedTensor.from_value_rowids(tf.gather(piece_ids, order),
                                                 tf.cast(tf.gather(word_of, order), tf.int64),
                                                 nrows=tf.cast(num_words, tf.int64))
