"""The builder's document keys: the native keyed BLAKE2b against Python's hashlib, the definition."""
import hashlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from research.data import _native, record_shards


def hashlib_keys(texts, key):
    digests = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=16, key=key).digest() for t in texts)
    return np.frombuffer(digests, dtype="<u8").reshape(len(texts), 2)


# Around BLAKE2b's 128-byte blocks: empty, one byte, a block less one, a block, a block and one...
_LENGTHS = [0, 1, 2, 63, 64, 127, 128, 129, 255, 256, 257, 1000, 100_000]


@pytest.mark.parametrize("key", [b"", b"k", (0).to_bytes(8, "little"), (2**64 - 1).to_bytes(8, "little"),
                                 bytes(range(64))])
def test_native_digests_equal_hashlib_around_block_sizes(key):
    texts = ["x" * n for n in _LENGTHS] + ["é" * n for n in _LENGTHS] + ["日本" * 70, "\U0001F600" * 40]
    np.testing.assert_array_equal(_native.keyed_blake2b_128(texts, key), hashlib_keys(texts, key))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=400), max_size=8),
       st.integers(0, 2**64 - 1))
def test_document_keys_equal_hashlib_on_random_text(texts, seed):
    keys = record_shards.document_keys(texts, seed)
    assert keys.dtype == np.uint64 and keys.shape == (len(texts), 2)
    np.testing.assert_array_equal(keys, hashlib_keys(texts, seed.to_bytes(8, "little")))


def test_refuses_a_long_key_and_items_that_are_not_text():
    with pytest.raises(ValueError, match="at most 64 bytes, got 65"):
        _native.keyed_blake2b_128(["a"], bytes(65))
    with pytest.raises(TypeError, match="list of str, got an item of type bytes"):
        _native.keyed_blake2b_128([b"a"], b"k")
    with pytest.raises(UnicodeEncodeError):
        _native.keyed_blake2b_128(["\ud800"], b"k")
