"""Faster exact encoding of printable-ASCII sentences with a SentencePiece unigram model.

SentencePiece's own batch encode runs its Viterbi over every sentence, builds a piece-and-offset
record for every token and returns one Python list of Python ints per sentence; the record builder
then flattens them into one array. For the sentences that are printable ASCII, which SentencePiece's
NFKC normalizers leave as they are, the native `UnigramEncoder` (ops/native/unigram.h) gives the
same ids: it keeps the ids of the words it has seen (a word's best path does not depend on its
neighbours when no piece holds "▁" inside) and runs SentencePiece's optimized Viterbi, with the same
float arithmetic and tie-breaking, on new words, and on whole sentences where a word's choice is
within float rounding of another. Every other sentence is encoded by SentencePiece itself, so the ids
are SentencePiece's for every input (tests compare them on whole corpora and random text).

`build` returns None, and everything goes to SentencePiece, for models this does not cover: other
model types (BPE, word, char), user-defined or byte pieces, normalizers other than nmt_nfkc, nfkc and
identity, whitespace handling other than the defaults, or any disagreement with SentencePiece on a
probe of every printable-ASCII character and pair. The model is read at the protobuf wire level
(ModelProto: pieces = 1, trainer_spec = 2, normalizer_spec = 3), not through sentencepiece_model_pb2,
which needs a newer protobuf than Apache Beam allows in the same environment.
"""
import struct

import numpy as np

_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_UNIGRAM = 1
_NORMALIZERS = (b"nmt_nfkc", b"nfkc", b"identity")
_PRINTABLE_ASCII = [chr(c) for c in range(0x20, 0x7F)]
# Words kept by one encoder before its cache is emptied (~100 bytes each): English text of any size
# has most of its running words among its 250k most frequent.
MAX_CACHED_WORDS = 1 << 18


def _varint(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(data):
    """Yields (field number, value) of a serialized message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire_type == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire_type == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} in a sentencepiece model")
        yield field, value


def _last(fields, number, default):
    values = [value for field, value in fields if field == number]
    return values[-1] if values else default


def read_model(model_proto):
    """(pieces list[bytes], scores list[float], types list[int], model type, normalizer fields) of a
    serialized ModelProto."""
    pieces, scores, types = [], [], []
    trainer, normalizer = [], []
    for field, value in _fields(model_proto):
        if field == 1:
            piece = list(_fields(value))
            pieces.append(_last(piece, 1, b""))
            scores.append(struct.unpack("<f", _last(piece, 2, b"\0\0\0\0"))[0])
            types.append(_last(piece, 3, _NORMAL))
        elif field == 2:
            trainer += list(_fields(value))
        elif field == 3:
            normalizer += list(_fields(value))
    model_type = _last(trainer, 3, _UNIGRAM)
    return pieces, scores, types, model_type, normalizer


def build(processor, max_cached_words=None):
    """A native UnigramEncoder that encodes as `processor` (a SentencePieceProcessor) does, or None
    when the model is not one it covers (see the module docstring). `max_cached_words`: words kept
    before the cache is emptied (default MAX_CACHED_WORDS; 0: no word cache)."""
    from research.data import _native  # pylint: disable=import-outside-toplevel
    pieces, scores, types, model_type, normalizer = read_model(processor.serialized_model_proto())
    whitespace_defaults = all(_last(normalizer, number, 1) == 1 for number in (3, 4, 5))
    if (model_type != _UNIGRAM or not whitespace_defaults or _last(normalizer, 1, b"") not in _NORMALIZERS
            or types.count(_UNKNOWN) != 1 or any(t in (_USER_DEFINED, _BYTE) for t in types)
            or _NORMAL not in types):
        return None
    normal_scores = [s for s, t in zip(scores, types) if t == _NORMAL]
    encoder = _native.UnigramEncoder(pieces, scores, [t == _NORMAL for t in types], types.index(_UNKNOWN),
                                     min(normal_scores),
                                     MAX_CACHED_WORDS if max_cached_words is None else max_cached_words)
    probes = _PRINTABLE_ASCII + [f"x{a}{b}x" for a in _PRINTABLE_ASCII for b in _PRINTABLE_ASCII]
    probes += ["Emma Woodhouse, handsome, clever, and rich, with a comfortable home", "I.", "a  b", " a", "a "]
    tokens, lengths = encode_flat(processor, encoder, probes)
    expected_tokens, expected_lengths = _flatten(processor.encode(probes, num_threads=1))
    if not (np.array_equal(tokens, expected_tokens) and np.array_equal(lengths, expected_lengths)):
        return None
    return encoder


def _flatten(encoded):
    lengths = np.array([len(ids) for ids in encoded], np.int64)
    tokens = np.fromiter((i for ids in encoded for i in ids), np.int32, count=int(lengths.sum()))
    return tokens, lengths


def encode_flat(processor, encoder, texts, num_threads=1):
    """(tokens int32 [sum of lengths], lengths int64 [len(texts)]): the ids of every text, one after
    the other, from `encoder` where it takes the text and from `processor` (SentencePiece) otherwise."""
    tokens, lengths, refused = encoder.encode(texts)
    if not len(refused):
        return tokens, lengths
    encoded = processor.encode([texts[i] for i in refused], num_threads=num_threads)
    refused_lengths = np.array([len(ids) for ids in encoded], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # a refused text's ids go where its 0 ids are
    tokens = np.insert(tokens, np.repeat(starts[refused], refused_lengths),
                       np.fromiter((i for ids in encoded for i in ids), np.int32, count=int(refused_lengths.sum())))
    lengths[refused] = refused_lengths
    return tokens.astype(np.int32, copy=False), lengths
