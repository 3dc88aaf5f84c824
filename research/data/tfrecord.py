"""TFRecord files of tf.train.Example protos, written without TensorFlow.

A TFRecord file is a sequence of records, each
    uint64 length (little-endian) | uint32 masked CRC32C of the 8 length bytes | data | uint32 masked CRC32C of data
with masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32). Each record's data here is
a serialized tf.train.Example whose features are Int64Lists, written in the order given (protobuf
readers accept map entries in any order). `serialize_examples` runs in C++ (`ops/native/tfrecord.cc`,
the `research.data._native` module); `serialize_examples_python` is its readable twin, byte for byte
the same, for tests and reference. Files written from these bytes are read by
`tf.data.TFRecordDataset` and `tf.io.parse_single_example` like those of `tf.io.TFRecordWriter`.
"""
import numpy as np

_CASTAGNOLI = 0x82F63B78
_CRC_TABLE = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ (_CASTAGNOLI if _crc & 1 else 0)
    _CRC_TABLE.append(_crc)


def crc32c_python(data):
    """CRC32C (Castagnoli) of `data` (bytes), unmasked; the twin of `_native.crc32c`."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def masked_crc32c(crc):
    """TFRecord's masking of a CRC32C value (int in [0, 2**32))."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value):
    value &= (1 << 64) - 1  # int64 semantics: negative values take 10 bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(tag, payload):
    return bytes([tag]) + _varint(len(payload)) + payload


def _example_python(named_rows):
    entries = b""
    for name, row in named_rows:
        int64_list = _length_delimited(0x0A, b"".join(_varint(int(v)) for v in row))
        feature = _length_delimited(0x1A, int64_list)
        entry = _length_delimited(0x0A, name.encode("utf-8")) + _length_delimited(0x12, feature)
        entries += _length_delimited(0x0A, entry)
    return _length_delimited(0x0A, entries)


def frame_record(data):
    """One TFRecord record (bytes) holding `data` (bytes)."""
    length = len(data).to_bytes(8, "little")
    return (length + masked_crc32c(crc32c_python(length)).to_bytes(4, "little") + data
            + masked_crc32c(crc32c_python(data)).to_bytes(4, "little"))


def _as_features(features):
    pairs = []
    for name, values in features.items():
        values = np.asarray(values)
        values = values[:, None] if values.ndim == 1 else values
        pairs.append((name, np.ascontiguousarray(values, dtype=np.int32)))
    return pairs


def serialize_examples_python(features):
    """The pure Python twin of `serialize_examples`: same argument, same bytes (slow)."""
    pairs = _as_features(features)
    rows = len(pairs[0][1]) if pairs else 0
    return b"".join(frame_record(_example_python([(name, values[r]) for name, values in pairs]))
                    for r in range(rows))


def serialize_examples(features):
    """TFRecord bytes of one tf.train.Example per row.

    Args:
      features: dict name -> int32 [rows] or [rows, width] (ids fit in int32); every value has the
        same rows. Features are written in the dict's order; each row of a [rows] array becomes a
        one-value list.

    Returns:
      bytes: `rows` framed records, ready to be written to (or appended to) a .tfrecord file.
    """
    from research.data import _native  # pylint: disable=import-outside-toplevel
    return _native.serialize_examples(_as_features(features))


def write_examples(path, features):
    """Writes `features` (see `serialize_examples`) as the TFRecord file `path`; returns its size."""
    data = serialize_examples(features)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)
