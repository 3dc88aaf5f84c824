"""The embedded demo data, prepared on first use and cached.

The source tree ships two public corpora in third_party/ (see third_party/README.md): Jane Austen's
six novels for pretraining and labelled movie-review sentences for fine-tuning. The first run trains
a sentencepiece model on the Austen text and builds pretraining records from it, one document per
chapter (the heading lines 'CHAPTER I' / 'Chapter 1' separate them; a book's title pages join the
last chapter of the book before); later runs find them in the cache directory and reuse them when
they were built with the same settings.

    python -m research.data.demo_data [--cache_dir=cache/demo]
"""
import json
import os
from pathlib import Path

from absl import app, flags, logging

from research import resources
from research.data import build_pretraining_data, tokenizer

AUSTEN_TEXT = "third_party/austen/austen.txt"
MOVIE_REVIEWS_TSV = "third_party/movie_reviews/vader_movie_binary.tsv"
DEFAULT_CACHE_DIR = "cache/demo"
# Chapter headings of the shipped novels: 'CHAPTER XIV' (Emma, Mansfield Park, ...) or 'Chapter 12'.
AUSTEN_CHAPTER_HEADING = r"(?:CHAPTER|Chapter) [0-9IVXLC]+"


def shipped_file(relative: str) -> str:
    """The path of a shipped corpus (in the installed package or the source tree)."""
    return str(resources.resource_path(relative))


def prepare_pretraining_demo(cache_dir: str = DEFAULT_CACHE_DIR, *, vocab_size: int = 8000, seq_len: int = 128,
                             shards: int = 2, mode: str = "full_sentences", validation_fraction: float = 0.05,
                             seed: int = 0) -> dict:
    """Returns the demo's spm model, record globs and metadata, building whatever the cache lacks.

    Returns:
      A dict with `spm_model` (path), `train_pattern` and `validation_pattern` (globs), `vocab_size`,
      `seq_len`, and `metadata` (what the record builder reported).
    """
    text = shipped_file(AUSTEN_TEXT)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    model_prefix = cache / f"austen_spm_{vocab_size}"
    model_path = Path(f"{model_prefix}.model")
    if not model_path.exists():
        logging.info("Training a %d-piece sentencepiece model on %s", vocab_size, text)
        model_path = Path(tokenizer.train_sentencepiece(text, str(model_prefix), vocab_size=vocab_size, seed=seed))
    records_dir = cache / f"records_{mode}_seq{seq_len}_vocab{vocab_size}"
    wanted = {"seq_len": seq_len, "mode": mode, "seed": seed, "validation_fraction": validation_fraction,
              "document_boundary": "separator", "document_separator": AUSTEN_CHAPTER_HEADING}
    metadata = _read_metadata(records_dir)
    if metadata is None or any(metadata.get(key) != value for key, value in wanted.items()):
        logging.info("Building pretraining records in %s", records_dir)
        metadata = build_pretraining_data.build_pretraining_data(
            text, str(model_path), str(records_dir), seq_len=seq_len, shards=shards, mode=mode,
            validation_fraction=validation_fraction, seed=seed, document_boundary="separator",
            document_separator=AUSTEN_CHAPTER_HEADING,
            # 4 MB take a second or two in one process; worker processes would first re-import the
            # program that asked for the demo (the training binary, TensorFlow included).
            workers=1)
    else:
        logging.info("Reusing the cached pretraining records in %s", records_dir)
    return {"spm_model": str(model_path), "train_pattern": str(records_dir / "train-*.tfrecord"),
            "validation_pattern": str(records_dir / "validation-*.tfrecord"), "vocab_size": vocab_size,
            "seq_len": seq_len, "metadata": metadata}


def demo_pretraining_records(split: str, cache_dir: str = DEFAULT_CACHE_DIR, vocab_size: int = 8000,
                             seq_len: int = 128) -> str:
    """The glob of the demo's 'train' or 'validation' records, built on first use (for gin files)."""
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    prepared = prepare_pretraining_demo(cache_dir, vocab_size=vocab_size, seq_len=seq_len)
    return prepared[f"{split}_pattern"]


def demo_spm_model(cache_dir: str = DEFAULT_CACHE_DIR, vocab_size: int = 8000, seq_len: int = 128) -> str:
    """The demo's sentencepiece model, trained on the Austen text on first use (for gin files)."""
    return prepare_pretraining_demo(cache_dir, vocab_size=vocab_size, seq_len=seq_len)["spm_model"]


def demo_movie_reviews() -> str:
    """The shipped movie-review sentences, `label<TAB>text` (for gin files)."""
    return shipped_file(MOVIE_REVIEWS_TSV)


def _read_metadata(records_dir: Path) -> dict | None:
    path = records_dir / "metadata.json"
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as metadata_file:
        return json.load(metadata_file)


def main(argv):
    del argv
    prepared = prepare_pretraining_demo(flags.FLAGS.cache_dir)
    print(f"sentencepiece model: {prepared['spm_model']}")
    print(f"training records:    {prepared['train_pattern']}")
    print(f"validation records:  {prepared['validation_pattern']}")
    print(json.dumps(prepared["metadata"], indent=2, default=str))


if __name__ == "__main__":
    flags.DEFINE_string("cache_dir", os.environ.get("RESEARCH_DEMO_CACHE", DEFAULT_CACHE_DIR),
                        "Where the demo's model and records are cached.")
    app.run(main)
