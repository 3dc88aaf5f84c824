"""Packs a flat tokenized corpus into fixed-length pretraining examples.

Two implementations with bit-identical output for the same inputs and seed: the native one in
`ops/native/packing.cc` (exposed as `research.data._native`, fast) and `pack_examples_python` here
(the readable twin, used to hold the native one to account in tests and where the extension is not
built). Both draw their randomness from the same SplitMix64 generator in the same order.

The corpus is flat, so that it crosses into C++ without copies:
  token_ids         int32 [num_tokens]
  sentence_offsets  int64 [num_sentences + 1]; sentence i is token_ids[so[i]:so[i + 1]]
  document_offsets  int64 [num_documents + 1]; document d is sentences [do[d], do[d + 1])

Modes:
  full_sentences  RoBERTa FULL-SENTENCES: `[CLS] s1 s2 ... [SEP]`, contiguous sentences packed up to
                  seq_len, crossing documents with a `[SEP]` between them. A sentence that does not fit
                  the room left starts a new example; one longer than a whole example is split, its
                  first piece filling the current example. Every token is kept; type ids are all 0.
  segment_pair    BERT: per document, chunks of contiguous sentences up to a target of seq_len - 3
                  tokens (with probability short_seq_prob a shorter random target, kept for the whole
                  document), split at a random sentence boundary into A and B (a one-sentence chunk
                  is cut at a random token), `[CLS] A [SEP] B [SEP]`, type ids 0 for CLS+A+SEP and 1
                  for B+SEP. While the pair is too long, the longer side loses one token from a
                  random end. B is the true continuation of A (a one-token chunk leaves B empty).
  next_sentence   As segment_pair, but with probability 0.5 (when there is another document) B is
                  taken from a random other document, starting at a random sentence, and the label
                  is 1; the unused true continuation then starts the next chunk. Otherwise label 0.
Empty sentences and documents take no part in any mode.
"""
import numpy as np

MODES = ("full_sentences", "segment_pair", "next_sentence")
MIN_SEQ_LEN = {"full_sentences": 3, "segment_pair": 5, "next_sentence": 5}
BACKENDS = ("native", "python")

_MASK64 = (1 << 64) - 1


class SplitMix64:
    """The PRNG both twins share (ops/native/splitmix64.h); every method mirrors its C++ namesake."""

    def __init__(self, seed):
        self.state = seed & _MASK64

    def next(self):
        """The next raw 64-bit value."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def below(self, n):
        """Uniform integer in [0, n) for n >= 1, by modulo."""
        return self.next() % n

    def uniform(self):
        """Uniform float in [0, 1) from the top 53 bits (exact, so C++ agrees)."""
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)

    def coin(self):
        """A fair coin from the top bit."""
        return (self.next() >> 63) == 1


def _validate_offsets(name, offsets, end, end_name):
    if len(offsets) < 1:
        raise ValueError(f"{name} must hold at least one value (0), got an empty array")
    if offsets[0] != 0:
        raise ValueError(f"{name}[0] must be 0, got {offsets[0]}")
    steps = np.diff(offsets)
    if np.any(steps < 0):
        i = int(np.argmax(steps < 0)) + 1
        raise ValueError(f"{name} must not decrease, but {name}[{i}]={offsets[i]} < "
                         f"{name}[{i - 1}]={offsets[i - 1]}")
    if offsets[-1] != end:
        raise ValueError(f"{name}[-1] must equal {end_name}={end}, got {offsets[-1]}")


def _validate(token_ids, sentence_offsets, document_offsets, seq_len, mode, short_seq_prob):
    """Raises ValueError naming the offending value; the same checks, in the same order, as C++."""
    for name, array in (("token_ids", token_ids), ("sentence_offsets", sentence_offsets),
                        ("document_offsets", document_offsets)):
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got {array.ndim} dimensions")
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}'; expected one of {', '.join(MODES)}")
    if seq_len < MIN_SEQ_LEN[mode]:
        raise ValueError(f"seq_len={seq_len} is too small for mode '{mode}' "
                         f"(minimum {MIN_SEQ_LEN[mode]})")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
    _validate_offsets("sentence_offsets", sentence_offsets, len(token_ids), "len(token_ids)")
    _validate_offsets("document_offsets", document_offsets, len(sentence_offsets) - 1,
                      "num_sentences")


class _Rows:
    """Collects examples as rows of seq_len: padding (pad_id, type 0) everywhere, CLS first."""

    def __init__(self, seq_len, cls_id, pad_id):
        self.seq_len, self.cls_id, self.pad_id = seq_len, cls_id, pad_id
        self.word_ids, self.type_ids, self.labels = [], [], []

    def begin(self):
        words = np.full(self.seq_len, self.pad_id, np.int32)
        words[0] = self.cls_id
        types = np.zeros(self.seq_len, np.int32)
        self.word_ids.append(words)
        self.type_ids.append(types)
        return words, types

    def features(self, with_labels):
        shape = (len(self.word_ids), self.seq_len)
        features = {
            "input_word_ids": np.stack(self.word_ids) if self.word_ids else np.zeros(shape, np.int32),
            "input_type_ids": np.stack(self.type_ids) if self.type_ids else np.zeros(shape, np.int32),
        }
        if with_labels:
            features["next_sentence_labels"] = np.array(self.labels, np.int32)
        return features


def _pack_full_sentences(tokens, sentence_offsets, document_offsets, sep_id, rows):
    """FULL-SENTENCES packing (see the module docstring); returns the number of tokens placed."""
    room_max = rows.seq_len - 2
    pieces = []  # the current example: token arrays and separator markers (None)
    fill = 0
    num_tokens = 0

    def emit():
        nonlocal fill
        words, _ = rows.begin()
        pos = 1
        for piece in pieces:
            if piece is None:
                words[pos] = sep_id
                pos += 1
            else:
                words[pos:pos + len(piece)] = piece
                pos += len(piece)
        words[pos] = sep_id
        pieces.clear()
        fill = 0

    pending_sep = False
    for d in range(len(document_offsets) - 1):
        document_has_tokens = False
        for s in range(document_offsets[d], document_offsets[d + 1]):
            lo, hi = sentence_offsets[s], sentence_offsets[s + 1]
            n = hi - lo
            if n == 0:
                continue
            document_has_tokens = True
            num_tokens += n
            sep = pending_sep and fill > 0
            pending_sep = False
            room = room_max - fill
            if sep and 1 + n <= room:
                pieces += [None, tokens[lo:hi]]
                fill += 1 + n
            elif not sep and n <= room:
                pieces.append(tokens[lo:hi])
                fill += n
            elif n <= room_max:
                emit()
                pieces.append(tokens[lo:hi])
                fill += n
            else:
                if sep:
                    if room >= 2:
                        pieces.append(None)
                        fill += 1
                    else:
                        emit()
                while lo < hi:
                    if fill == room_max:
                        emit()
                    k = min(room_max - fill, hi - lo)
                    pieces.append(tokens[lo:lo + k])
                    fill += k
                    lo += k
        if document_has_tokens:
            pending_sep = True
    if fill > 0:
        emit()
    return num_tokens


def _pack_segment_pairs(tokens, sentence_offsets, document_offsets, sep_id, nsp, seed,
                        short_seq_prob, rows):
    """segment_pair / next_sentence packing (see the module docstring); returns tokens placed."""
    max_num_tokens = rows.seq_len - 3
    docs = []  # per document with tokens: a list of (begin, end) token ranges of non-empty sentences
    for d in range(len(document_offsets) - 1):
        sentences = [(sentence_offsets[s], sentence_offsets[s + 1])
                     for s in range(document_offsets[d], document_offsets[d + 1])
                     if sentence_offsets[s + 1] > sentence_offsets[s]]
        if sentences:
            docs.append(sentences)

    def concat(sentences):
        return [t for begin, end in sentences for t in tokens[begin:end]]

    rng = SplitMix64(seed)
    num_tokens = 0
    for di, doc in enumerate(docs):
        target = max_num_tokens
        if rng.uniform() < short_seq_prob:
            target = 2 + rng.below(max_num_tokens - 1)
        chunk_begin = 0
        chunk_length = 0
        i = 0
        while i < len(doc):
            chunk_length += doc[i][1] - doc[i][0]
            if i != len(doc) - 1 and chunk_length < target:
                i += 1
                continue
            n = i - chunk_begin + 1
            a_end = chunk_begin + (1 + rng.below(n - 1) if n >= 2 else 1)
            is_random = nsp and len(docs) >= 2 and rng.uniform() < 0.5
            a = concat(doc[chunk_begin:a_end])
            b = []
            if is_random:
                other = rng.below(len(docs) - 1)
                if other >= di:
                    other += 1
                other_doc = docs[other]
                target_b = target - len(a)
                for begin, end in other_doc[rng.below(len(other_doc)):]:
                    b += tokens[begin:end]
                    if len(b) >= target_b:
                        break
                i = a_end - 1  # the unused true continuation starts the next chunk
            elif n >= 2:
                b = concat(doc[a_end:i + 1])
            elif len(a) >= 2:  # one sentence: cut it at a random token
                cut = 1 + rng.below(len(a) - 1)
                a, b = a[:cut], a[cut:]
            a_lo, a_hi, b_lo, b_hi = 0, len(a), 0, len(b)
            while (a_hi - a_lo) + (b_hi - b_lo) > max_num_tokens:
                trim_a = (a_hi - a_lo) > (b_hi - b_lo)
                front = rng.coin()
                if trim_a:
                    a_lo, a_hi = (a_lo + 1, a_hi) if front else (a_lo, a_hi - 1)
                else:
                    b_lo, b_hi = (b_lo + 1, b_hi) if front else (b_lo, b_hi - 1)
            words, types = rows.begin()
            pos = 1 + a_hi - a_lo
            words[1:pos] = a[a_lo:a_hi]
            words[pos] = sep_id
            b_start = pos + 1
            pos = b_start + b_hi - b_lo
            words[b_start:pos] = b[b_lo:b_hi]
            words[pos] = sep_id
            types[b_start:pos + 1] = 1
            num_tokens += (a_hi - a_lo) + (b_hi - b_lo)
            if nsp:
                rows.labels.append(int(is_random))
            chunk_begin = i + 1
            chunk_length = 0
            i += 1
    return num_tokens


def pack_examples_python(token_ids, sentence_offsets, document_offsets, seq_len, mode, seed,
                         cls_id, sep_id, pad_id, short_seq_prob):
    """The pure Python twin of `research.data._native.pack_examples`; same arguments and result.

    Args: as `pack_examples`, with arrays already of the exact dtypes (int32 / int64, 1-D).
    Returns: `(features, num_tokens)` as `pack_examples`.
    Raises: ValueError for the same bad arguments as the C++ twin.
    """
    _validate(token_ids, sentence_offsets, document_offsets, seq_len, mode, short_seq_prob)
    rows = _Rows(seq_len, cls_id, pad_id)
    # Plain Python ints index much faster than numpy scalars in the loops below.
    sentence_offsets = sentence_offsets.tolist()
    document_offsets = document_offsets.tolist()
    if mode == "full_sentences":
        num_tokens = _pack_full_sentences(token_ids, sentence_offsets, document_offsets, sep_id,
                                          rows)
    else:
        num_tokens = _pack_segment_pairs(token_ids.tolist(), sentence_offsets, document_offsets,
                                         sep_id, mode == "next_sentence", seed, short_seq_prob, rows)
    return rows.features(mode == "next_sentence"), num_tokens


def pack_examples(token_ids, sentence_offsets, document_offsets, seq_len, mode="full_sentences",
                  seed=0, cls_id=2, sep_id=3, pad_id=0, short_seq_prob=0.1, backend="native"):
    """Packs a flat tokenized corpus into fixed-length examples (see the module docstring).

    Args:
      token_ids: int32 [num_tokens] (converted if another integer dtype; never copied if int32).
      sentence_offsets: int64 [num_sentences + 1], starting at 0 and ending at num_tokens.
      document_offsets: int64 [num_documents + 1], in sentences, ending at num_sentences.
      seq_len: length of every example, special tokens and padding included.
      mode: 'full_sentences', 'segment_pair' or 'next_sentence'.
      seed: 0 <= seed < 2**64; the pair modes are a deterministic function of it.
      cls_id, sep_id, pad_id: ids of [CLS], [SEP] and [PAD].
      short_seq_prob: pair modes: chance that a document targets a random shorter length.
      backend: 'native' (C++, needs the built extension) or 'python' (the twin).

    Returns:
      `(features, num_tokens)`: features maps 'input_word_ids' and 'input_type_ids' to int32
      [num_examples, seq_len] (padded with pad_id, type 0) and, in next_sentence mode,
      'next_sentence_labels' to int32 [num_examples] (1: B is from another document);
      num_tokens counts the corpus tokens placed in examples (special tokens excluded).

    Raises:
      ValueError: unknown mode or backend, seq_len too small for the mode, seed out of range,
        offsets not starting at 0, decreasing, or not ending at the length they index.
      ImportError: backend='native' and the extension is not built.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'; expected one of {', '.join(BACKENDS)}")
    if not 0 <= seed <= _MASK64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    token_ids = np.ascontiguousarray(token_ids, dtype=np.int32)
    sentence_offsets = np.ascontiguousarray(sentence_offsets, dtype=np.int64)
    document_offsets = np.ascontiguousarray(document_offsets, dtype=np.int64)
    args = (token_ids, sentence_offsets, document_offsets, int(seq_len), mode, int(seed),
            int(cls_id), int(sep_id), int(pad_id), float(short_seq_prob))
    if backend == "python":
        return pack_examples_python(*args)
    from research.data import _native  # pylint: disable=import-outside-toplevel
    return _native.pack_examples(*args)
