"""The pure steps of the pretraining-record builder, shared by its local and Apache Beam drivers.

    block of text --tokenize_block--> documents, each keyed and routed to a bucket
    bucket (all its documents) --pack_bucket--> shuffled, serialized TFRecord examples

Every document gets a 128-bit key: a keyed BLAKE2b hash of its text and the seed. The key decides
its split (validation when its second half, read as a fraction of 2**64, is below
`validation_fraction`), its bucket, and its place in the bucket (documents are sorted by key before
packing). A bucket is one part of one output shard (`BucketLayout`), so a shard's documents come from
the whole corpus, and the records depend only on the set of documents, the settings and the seed:
never on how the input was cut into blocks, how many workers ran, or in which order they finished.
The pair modes draw their random next sentences from the other documents of the same bucket.
"""
import contextlib
import dataclasses
import gc
import hashlib
import math

import numpy as np

from research.data import features, packing, text_input, tfrecord

SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class BucketLayout:
    """How many shards each split has and how many buckets make one shard.

    A split of about B bytes of text written into S shards has ceil(B / (S * bucket_bytes)) buckets
    per shard, so that one bucket (the most a worker holds while packing) stays near bucket_bytes.
    """
    shards: dict
    buckets_per_shard: dict

    @classmethod
    def plan(cls, text_bytes, shards, validation_shards, validation_fraction, bucket_bytes):
        split_bytes = {"train": text_bytes * (1 - validation_fraction),
                       "validation": text_bytes * validation_fraction}
        split_shards = {"train": shards, "validation": validation_shards if validation_fraction else 0}
        per_shard = {split: max(1, math.ceil(split_bytes[split] / (n * bucket_bytes))) if n else 0
                     for split, n in split_shards.items()}
        return cls(split_shards, per_shard)

    def buckets(self, split):
        """Number of buckets of `split` (shards times buckets per shard)."""
        return self.shards[split] * self.buckets_per_shard[split]

    def units(self):
        """Every (split, shard, part) in output order; bucket = shard * buckets_per_shard + part."""
        return [(split, shard, part) for split in SPLITS for shard in range(self.shards[split])
                for part in range(self.buckets_per_shard[split])]

    def shard_names(self, split, task_index=0, num_tasks=1):
        """File names of the shards of `split`; with several tasks, each task's names are its own."""
        task = f"-task{task_index:05d}-of-{num_tasks:05d}" if num_tasks > 1 else ""
        n = self.shards[split]
        return [f"{split}{task}-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """What both steps need; picklable, so that worker processes and Beam workers receive it."""
    tokenizer: object  # encode_batch(texts, num_threads) (or encode_flat) plus pad_id, cls_id, sep_id, vocab_size
    boundary: text_input.DocumentBoundary
    layout: BucketLayout
    seq_len: int
    mode: str
    seed: int
    validation_fraction: float
    short_seq_prob: float
    packer: str = "native"

    @property
    def token_dtype(self):
        """Tokens are held as uint16 between the steps when every id fits."""
        return np.uint16 if self.tokenizer.vocab_size <= 1 << 16 else np.int32


@dataclasses.dataclass
class Documents:
    """Tokenized documents, flat (see research/data/packing.py):

      keys          uint64 [documents, 2]  the documents' hash keys
      num_sentences int32  [documents]     sentences per document
      sentence_lengths int32 [sentences]   tokens per sentence
      tokens        uint16 or int32 [tokens]
    """
    keys: np.ndarray
    num_sentences: np.ndarray
    sentence_lengths: np.ndarray
    tokens: np.ndarray

    @classmethod
    def concatenate(cls, parts):
        parts = list(parts)
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts])
                     for f in dataclasses.fields(cls)))

    def arrays(self):
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


class _AdditiveCounts:
    """A dataclass of counts that `add` another of the same kind field by field."""

    def add(self, other):
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class BlockStats(_AdditiveCounts):
    """Counts of one block (additive)."""
    documents: int = 0
    empty_documents: int = 0
    sentences: int = 0
    tokens: int = 0
    bad_lines: int = 0
    text_bytes: int = 0


def document_keys(texts, seed):
    """uint64 [len(texts), 2]: the BLAKE2b-128 of each text's UTF-8 keyed by the seed (as 8 little-endian
    bytes), each digest read as two little-endian uint64: hashlib.blake2b(text.encode(), digest_size=16,
    key=key), computed in native code (ops/native/blake2b.cc) without a Python object per document."""
    from research.data import _native  # pylint: disable=import-outside-toplevel
    return _native.keyed_blake2b_128(list(texts), seed.to_bytes(8, "little"))


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Pauses Python's cyclic garbage collector. Tokenizing a block makes one id list per sentence
    (~10^5 lists, no reference cycles), and their allocations would otherwise start collections
    that walk every live list: about 8% of the builder's time at 40 MB."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def route(keys, settings):
    """(split index [D], bucket [D]) of documents with `keys` (uint64 [D, 2])."""
    threshold = np.uint64(min(int(settings.validation_fraction * 2.0**64), 2**64 - 1))
    is_validation = keys[:, 1] < threshold
    buckets = np.where(is_validation, keys[:, 0] % np.uint64(max(1, settings.layout.buckets("validation"))),
                       keys[:, 0] % np.uint64(settings.layout.buckets("train")))
    return is_validation.astype(np.int64), buckets.astype(np.int64)


def tokenize_block(block, settings, num_threads=1):
    """Tokenizes one block and routes its documents.

    Args:
      block: list[bytes] of pieces (see research/data/text_input.py).
      num_threads: threads for the tokenizer.

    Returns:
      (dict (split, bucket) -> Documents, BlockStats). Documents without any token are dropped
      (counted in empty_documents).
    """
    from research.data import _native  # pylint: disable=import-outside-toplevel
    stats = BlockStats()
    text_stats = text_input.TextStats()
    with _cyclic_gc_paused():
        texts, flat, num_sentences = text_input.split_documents(block, settings.boundary, text_stats)
        stats.bad_lines, stats.text_bytes = text_stats.bad_lines, text_stats.text_bytes
        if hasattr(settings.tokenizer, "encode_flat"):
            tokens, sentence_lengths = settings.tokenizer.encode_flat(flat, num_threads=num_threads)
        else:
            tokens, sentence_lengths = _native.flatten_ids(
                settings.tokenizer.encode_batch(flat, num_threads=num_threads) if flat else [])
        del flat
    tokens = tokens.astype(settings.token_dtype)
    token_offsets = np.concatenate([[0], np.cumsum(sentence_lengths)])
    sentence_ends = np.cumsum(num_sentences)
    keep = token_offsets[sentence_ends] - token_offsets[sentence_ends - num_sentences] > 0
    stats.documents = int(keep.sum())
    stats.empty_documents = len(texts) - stats.documents
    # Drop empty sentences and documents; the packer skips them anyway, and counts stay honest.
    sentence_document = np.repeat(np.arange(len(texts)), num_sentences)
    keep_sentence = (sentence_lengths > 0) & keep[sentence_document]
    lengths = sentence_lengths[keep_sentence].astype(np.int32)
    counts = np.bincount(sentence_document[keep_sentence], minlength=len(texts))[keep].astype(np.int32)
    stats.sentences, stats.tokens = int(len(lengths)), int(lengths.sum())
    keys = document_keys([t for t, k in zip(texts, keep) if k], settings.seed)
    split_index, bucket = route(keys, settings)
    routed = {}
    groups = split_index * (1 << 32) + bucket
    for group in np.unique(groups):
        docs = np.flatnonzero(groups == group)
        routed[(SPLITS[int(group >> 32)], int(group & 0xFFFFFFFF))] = Documents(
            keys[docs], *_native.select_documents(counts, lengths, tokens, docs))
    return routed, stats


def bucket_seed(seed, split, bucket):
    """The packing and shuffling seed of one bucket: a hash of the run's seed and its place."""
    digest = hashlib.blake2b(f"{seed}/{split}/{bucket}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclasses.dataclass
class BucketStats(_AdditiveCounts):
    """What packing one bucket produced (additive)."""
    documents: int = 0
    examples: int = 0
    tokens_packed: int = 0
    filled_slots: int = 0
    slots: int = 0


def pack_bucket(parts, split, bucket, settings):
    """Packs every document of one bucket into shuffled, serialized examples.

    Args:
      parts: iterable of Documents (the bucket's documents, in any order and grouping).
      split, bucket: the bucket's place (its seed derives from it).

    Returns:
      (bytes of TFRecord records, BucketStats). Features: input_word_ids and input_type_ids
      int64 [seq_len], and in next_sentence mode next_sentence_labels int64 [1].
    """
    from research.data import _native  # pylint: disable=import-outside-toplevel
    parts = list(parts)
    docs = Documents.concatenate(parts) if parts else None
    del parts  # the bucket is held once, concatenated (callers pass a generator)
    tokenizer = settings.tokenizer
    if docs is None or not len(docs.keys):
        return b"", BucketStats()
    order = np.lexsort((docs.keys[:, 1], docs.keys[:, 0]))
    num_sentences, lengths, tokens = _native.select_documents(docs.num_sentences, docs.sentence_lengths,
                                                              docs.tokens, order)
    del docs
    sentence_offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    document_offsets = np.concatenate([[0], np.cumsum(num_sentences, dtype=np.int64)])
    tokens = tokens.astype(np.int32, copy=False)
    del num_sentences, lengths
    seed = bucket_seed(settings.seed, split, bucket)
    examples, packed = packing.pack_examples(
        tokens, sentence_offsets, document_offsets, settings.seq_len, settings.mode, seed,
        tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, settings.short_seq_prob,
        backend=settings.packer)
    del tokens
    words = examples[features.INPUT_WORD_IDS]
    stats = BucketStats(documents=len(order), examples=len(words), tokens_packed=int(packed),
                        filled_slots=int((words != tokenizer.pad_id).sum()), slots=int(words.size))
    del words
    shuffle = np.random.default_rng(seed).permutation(stats.examples)
    for name in list(examples):  # one feature at a time, so that one copy at most is extra
        examples[name] = examples[name][shuffle]
    return tfrecord.serialize_examples(examples), stats
