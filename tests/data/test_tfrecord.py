"""research.data.tfrecord: native TFRecords of tf.train.Example, byte for byte its Python twin,
read back by TensorFlow feature by feature."""
import numpy as np
import pytest

from research.data import _native, tfrecord


def test_crc32c_known_values():
    # RFC 3720 (iSCSI) check value and the all-zero 32-byte vector.
    assert _native.crc32c(b"123456789") == tfrecord.crc32c_python(b"123456789") == 0xE3069283
    assert _native.crc32c(bytes(32)) == 0x8A9136AA
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 63, 1000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert _native.crc32c(data) == tfrecord.crc32c_python(data)


def _features(rows, seq_len, seed=0):
    rng = np.random.default_rng(seed)
    return {"input_word_ids": rng.integers(0, 70000, (rows, seq_len)).astype(np.int32),
            "input_type_ids": rng.integers(0, 2, (rows, seq_len)).astype(np.int32),
            "next_sentence_labels": rng.integers(-3, 2, rows).astype(np.int32)}


def test_native_bytes_equal_the_python_twin():
    features = _features(23, 17)
    assert tfrecord.serialize_examples(features) == tfrecord.serialize_examples_python(features)
    assert tfrecord.serialize_examples({"x": np.zeros((0, 4), np.int32)}) == b""


def test_tensorflow_reads_every_feature_back(tmp_path):
    import tensorflow as tf
    features = _features(40, 128, seed=1)
    path = tmp_path / "x.tfrecord"
    assert tfrecord.write_examples(path, features) == path.stat().st_size
    spec = {"input_word_ids": tf.io.FixedLenFeature([128], tf.int64),
            "input_type_ids": tf.io.FixedLenFeature([128], tf.int64),
            "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64)}
    rows = list(tf.data.TFRecordDataset(str(path)).map(lambda r: tf.io.parse_single_example(r, spec)))
    assert len(rows) == 40
    for name, values in features.items():
        got = np.stack([row[name].numpy() for row in rows])
        np.testing.assert_array_equal(got.reshape(values.shape), values)
    # The same Example as TensorFlow's own protos (same values, any byte order of the map).
    for record, i in zip(tf.data.TFRecordDataset(str(path)), range(3)):
        parsed = tf.train.Example.FromString(record.numpy())
        assert list(parsed.features.feature["input_word_ids"].int64_list.value) == \
            features["input_word_ids"][i].tolist()


def test_a_corrupted_record_is_refused_by_tensorflow(tmp_path):
    import tensorflow as tf
    data = bytearray(tfrecord.serialize_examples(_features(2, 8)))
    data[20] ^= 1  # inside the first example: its CRC no longer matches
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))


def test_bad_features_are_named():
    with pytest.raises(ValueError, match="'b' has 2 rows"):
        tfrecord.serialize_examples({"a": np.zeros((3, 4), np.int32), "b": np.zeros((2, 4), np.int32)})
