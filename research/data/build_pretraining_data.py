"""Builds pretraining TFRecords from plain text: read, split, tokenize, pack, shuffle, write shards.

    python -m research.data.build_pretraining_data --input='corpus/*.txt' --spm_model=spm.model \\
        --output_dir=records --seq_len=128 --shards=4 [--mode=full_sentences] \\
        [--validation_fraction=0.05] [--seed=0] [--packer=native|python]

Input text: blank lines separate documents; within a document, lines are joined and split into
sentences after '.', '!' or '?' (optionally followed by a closing quote or parenthesis) and
whitespace. Lines that are not valid UTF-8 are skipped and counted, never fatal. The last
`validation_fraction` of documents (in file order) form the validation split; each split is packed
on its own (see research/data/packing.py), its examples shuffled with the seed, and written as
  {output_dir}/train-00000-of-00004.tfrecord ...   {output_dir}/validation-00000-of-00001.tfrecord
  {output_dir}/metadata.json                       seq_len, mode, seed, counts, vocab_size, model
Records are tf.train.Example with int64 features input_word_ids [seq_len], input_type_ids [seq_len]
and, in next_sentence mode, next_sentence_labels [1]; they hold unmasked ids (masking happens in
the input pipeline). Files are written under temporary names and renamed only once all of them are
complete, metadata.json last, so an interrupted run never leaves a shard that looks finished.
"""
import glob
import json
import os
import re
import time

import numpy as np
from absl import flags, logging

from research.data import features, packing
from research.data.tokenizer import CLS_ID, PAD_ID, SEP_ID, Tokenizer

# Words whose '.' does not end a sentence: titles before a name, and a few abbreviations.
ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "St", "Esq", "Messrs", "Mme", "Mlle", "Capt", "Col", "Gen",
                 "Lt", "Sgt", "Rev", "Prof", "Hon", "Sr", "Jr", "vs", "viz")
# Sentence ends: '.', '!' or '?', optionally a closing quote or parenthesis, then whitespace; not
# after one of ABBREVIATIONS or a single capital initial ('J. Smith'; 'I.' still ends a sentence).
_SENTENCE_BREAK = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)]))"
    + "".join(rf"(?<!\b{word}\.)" for word in ABBREVIATIONS)
    + r"(?<!\b[A-HJ-Z]\.)\s+")
_TOKENIZE_BATCH_SENTENCES = 20_000
_LOG_EVERY_SECONDS = 10.0


def split_sentences(text):
    """Splits a document's text into sentences (list[str], stripped, none empty)."""
    return [s for s in (part.strip() for part in _SENTENCE_BREAK.split(text)) if s]


def expand_input_pattern(pattern):
    """Returns the sorted files matching `pattern`: one glob or several joined by commas.

    Raises FileNotFoundError naming each glob that matches no file.
    """
    paths = []
    for part in (p.strip() for p in pattern.split(",")):
        if not part:
            continue
        matches = sorted(p for p in glob.glob(part) if os.path.isfile(p))
        if not matches:
            raise FileNotFoundError(f"--input pattern matches no file: {part}")
        paths += matches
    if not paths:
        raise FileNotFoundError(f"--input pattern is empty: {pattern!r}")
    return paths


class TextStats:
    """Counts what the reader skipped."""

    def __init__(self):
        self.bad_lines = 0


def read_documents(paths, stats):
    """Yields documents (list[str] of sentences) from the files at `paths`, in order.

    Files are read as bytes and decoded line by line, so that a line that is not valid UTF-8 only
    costs itself: it is skipped and counted in `stats.bad_lines`.
    """
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        lines = []
        for raw in data.split(b"\n"):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                stats.bad_lines += 1
                continue
            if line:
                lines.append(line)
            elif lines:
                yield split_sentences(" ".join(lines))
                lines = []
        if lines:
            yield split_sentences(" ".join(lines))


class FlatCorpus:
    """A tokenized corpus in the flat layout the packer takes (see research/data/packing.py).

    Attributes:
      token_ids: int32 [num_tokens].
      sentence_offsets: int64 [num_sentences + 1].
      document_offsets: int64 [num_documents + 1], in sentences.
    """

    def __init__(self, token_ids, sentence_offsets, document_offsets):
        self.token_ids = token_ids
        self.sentence_offsets = sentence_offsets
        self.document_offsets = document_offsets

    @property
    def num_documents(self):
        return len(self.document_offsets) - 1

    @property
    def num_tokens(self):
        return len(self.token_ids)

    def documents(self, begin, end):
        """Returns documents [begin, end) as a FlatCorpus of its own (offsets rebased to 0)."""
        s0, s1 = self.document_offsets[begin], self.document_offsets[end]
        t0, t1 = self.sentence_offsets[s0], self.sentence_offsets[s1]
        return FlatCorpus(self.token_ids[t0:t1], self.sentence_offsets[s0:s1 + 1] - t0,
                          self.document_offsets[begin:end + 1] - s0)


def tokenize_documents(documents, tokenizer):
    """Tokenizes an iterable of documents (list[str] each) into a FlatCorpus, logging progress.

    Sentences are encoded in batches on every CPU; documents without sentences are dropped.
    """
    tokens, sentence_lengths, document_sizes = [], [], []
    batch = []
    num_tokens = 0
    start = last_log = time.monotonic()

    def flush():
        nonlocal num_tokens
        for ids in tokenizer.encode_batch(batch):
            tokens.append(np.asarray(ids, np.int32))
            sentence_lengths.append(len(ids))
            num_tokens += len(ids)
        batch.clear()

    for document in documents:
        if not document:
            continue
        batch += document
        document_sizes.append(len(document))
        if len(batch) >= _TOKENIZE_BATCH_SENTENCES:
            flush()
            now = time.monotonic()
            if now - last_log >= _LOG_EVERY_SECONDS:
                last_log = now
                logging.info("read %d documents, %d tokens, %.0f tokens/s", len(document_sizes),
                             num_tokens, num_tokens / (now - start))
    flush()
    return FlatCorpus(
        np.concatenate(tokens) if tokens else np.zeros(0, np.int32),
        np.concatenate([[0], np.cumsum(sentence_lengths, dtype=np.int64)]).astype(np.int64),
        np.concatenate([[0], np.cumsum(document_sizes, dtype=np.int64)]).astype(np.int64))


def _shard_names(split, num_shards):
    return [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def _write_files(output_dir, shards, metadata):
    """Writes every shard and metadata.json under temporary names, then renames them all.

    Args:
      shards: list of (file name, examples dict name -> int32 [E, ...]).
      metadata: JSON-serializable dict for metadata.json, renamed last.
    On any error (OSError such as a full disk, KeyboardInterrupt...) the temporaries are removed.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (slow; only to write)

    def serialize(examples, row):
        feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(
            value=np.atleast_1d(values[row]).tolist())) for name, values in examples.items()}
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    names = [name for name, _ in shards] + ["metadata.json"]
    temporary = {name: os.path.join(output_dir, f".tmp-{name}") for name in names}
    try:
        for name, examples in shards:
            num_rows = len(examples[features.INPUT_WORD_IDS])
            with tf.io.TFRecordWriter(temporary[name]) as writer:
                for row in range(num_rows):
                    writer.write(serialize(examples, row))
        with open(temporary["metadata.json"], "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
            f.write("\n")
        for name in names:
            os.replace(temporary[name], os.path.join(output_dir, name))
    except BaseException:
        for path in temporary.values():
            if os.path.exists(path):
                os.remove(path)
        raise


def _split_shards(split, examples, num_shards, seed):
    """Shuffles `examples` (dict name -> int32 [E, ...]) and cuts them into `num_shards` files."""
    order = np.random.default_rng(seed).permutation(len(examples[features.INPUT_WORD_IDS]))
    parts = np.array_split(order, num_shards)
    return [(name, {k: v[part] for k, v in examples.items()})
            for name, part in zip(_shard_names(split, num_shards), parts)]


def build_pretraining_data(input_pattern, spm_model, output_dir, seq_len=128, shards=1,
                           mode="full_sentences", validation_fraction=0.05, seed=0,
                           packer="native", short_seq_prob=0.1):
    """Builds the records described in the module docstring and returns the metadata dict.

    Args:
      input_pattern: a glob of text files, or several globs joined by commas.
      spm_model: path of a model trained by research.data.tokenizer.train_sentencepiece.
      output_dir: created if needed.
      seq_len: example length, special tokens and padding included.
      shards: number of train shards (validation is one shard).
      mode: 'full_sentences', 'segment_pair' or 'next_sentence' (see research/data/packing.py).
      validation_fraction: in [0, 1): share of documents, taken from the end, held out for
        validation; when positive, at least one document goes each way (if there are two).
      seed: 0 <= seed < 2**64; drives packing and shuffling.
      packer: 'native' (C++) or 'python' (its twin; same output, much slower).
      short_seq_prob: pair modes: chance of a shorter target length per document.

    Raises:
      ValueError: a bad argument (named), or input without any token.
      FileNotFoundError: an input glob matching nothing, or a missing spm model.
    """
    if mode not in packing.MODES:
        raise ValueError(f"unknown mode '{mode}'; expected one of {', '.join(packing.MODES)}")
    if seq_len < packing.MIN_SEQ_LEN[mode]:
        raise ValueError(f"seq_len={seq_len} is too small for mode '{mode}' "
                         f"(minimum {packing.MIN_SEQ_LEN[mode]})")
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    if packer not in packing.BACKENDS:
        raise ValueError(f"unknown packer '{packer}'; expected one of {', '.join(packing.BACKENDS)}")
    paths = expand_input_pattern(input_pattern)
    tokenizer = Tokenizer(spm_model)
    os.makedirs(output_dir, exist_ok=True)

    start = time.monotonic()
    stats = TextStats()
    corpus = tokenize_documents(read_documents(paths, stats), tokenizer)
    if corpus.num_tokens == 0:
        raise ValueError(f"no tokens in the input ({len(paths)} files matching {input_pattern!r}, "
                         f"{stats.bad_lines} lines not valid UTF-8)")
    num_validation = 0
    if validation_fraction > 0 and corpus.num_documents >= 2:
        num_validation = min(max(1, round(corpus.num_documents * validation_fraction)),
                             corpus.num_documents - 1)
    num_train = corpus.num_documents - num_validation
    splits = [("train", corpus.documents(0, num_train), shards, seed)]
    if num_validation:
        splits.append(("validation", corpus.documents(num_train, corpus.num_documents), 1,
                       (seed + 1) % 2**64))

    files, counts = [], {"documents": corpus.num_documents, "tokens": corpus.num_tokens,
                         "sentences": len(corpus.sentence_offsets) - 1,
                         "bad_lines": stats.bad_lines}
    for split, part, num_shards, split_seed in splits:
        examples, packed = packing.pack_examples(
            part.token_ids, part.sentence_offsets, part.document_offsets, seq_len, mode,
            split_seed, CLS_ID, SEP_ID, PAD_ID, short_seq_prob, backend=packer)
        files += _split_shards(split, examples, num_shards, split_seed)
        counts[f"{split}_documents"] = part.num_documents
        counts[f"{split}_examples"] = len(examples[features.INPUT_WORD_IDS])
        counts[f"{split}_tokens_packed"] = packed
    metadata = {
        "seq_len": seq_len, "mode": mode, "seed": seed, "short_seq_prob": short_seq_prob,
        "validation_fraction": validation_fraction, "vocab_size": tokenizer.vocab_size, "spm_model": os.path.abspath(spm_model),
        "input": input_pattern, "num_input_files": len(paths), "counts": counts,
        "files": [name for name, _ in files],
    }
    _write_files(output_dir, files, metadata)
    seconds = time.monotonic() - start
    logging.info(
        "done in %.1f s: %d documents, %d tokens (%.0f tokens/s); %d train examples in %d shards, "
        "%d validation examples; %d lines not valid UTF-8 were skipped", seconds,
        corpus.num_documents, corpus.num_tokens, corpus.num_tokens / max(seconds, 1e-9),
        counts["train_examples"], shards, counts.get("validation_examples", 0), stats.bad_lines)
    return metadata


def _define_flags():
    """Defines the CLI's flags; only when run as a program, so that importing this module never
    clashes with flags of the same name elsewhere (research/main.py has --mode)."""
    flags.DEFINE_string("input", None, "Glob of input text files (several joined by commas).",
                        required=True)
    flags.DEFINE_string("spm_model", None, "SentencePiece .model path.", required=True)
    flags.DEFINE_string("output_dir", None, "Where to write the records.", required=True)
    flags.DEFINE_integer("seq_len", 128, "Example length, special tokens included.")
    flags.DEFINE_integer("shards", 1, "Number of train shards.")
    flags.DEFINE_enum("mode", "full_sentences", list(packing.MODES), "Packing mode.")
    flags.DEFINE_float("validation_fraction", 0.05, "Share of documents held out, from the end.")
    flags.DEFINE_integer("seed", 0, "Seed of packing and shuffling, in [0, 2**64).")
    flags.DEFINE_enum("packer", "native", list(packing.BACKENDS), "Packing implementation.")
    flags.DEFINE_float("short_seq_prob", 0.1, "Pair modes: chance of a shorter target length.")


def main(argv):
    del argv  # unused
    flag_values = flags.FLAGS
    build_pretraining_data(flag_values.input, flag_values.spm_model, flag_values.output_dir,
                           flag_values.seq_len, flag_values.shards, flag_values.mode,
                           flag_values.validation_fraction, flag_values.seed, flag_values.packer,
                           flag_values.short_seq_prob)


if __name__ == "__main__":
    from absl import app  # pylint: disable=import-outside-toplevel
    _define_flags()
    app.run(main)
