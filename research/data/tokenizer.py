"""SentencePiece tokenizer with BERT's special tokens at fixed ids, and the command that trains one.

The ids of the special tokens are fixed for every model this module trains:
  0 [PAD]   1 [UNK]   2 [CLS] (sentencepiece's BOS)   3 [SEP] (EOS)   4 [MASK] (a control symbol)
Control symbols are never produced from raw text: `encode` only ever returns ids >= 1 other than
2, 3 and 4 ([UNK] included). Code that takes a tokenizer (the record builder) reads the ids from
its `pad_id`, `unk_id`, `cls_id`, `sep_id`, `mask_id` and `vocab_size` attributes, so that any
tokenizer with those attributes and `encode_batch` plugs in (e.g. a WordPiece one with BERT's ids).

Training a model (one sentence or paragraph a line; several files joined by commas, globs allowed):

    python -m research.data.tokenizer --input=corpus.txt --model_prefix=spm --vocab_size=8000

writes spm.model (pass it as --spm_model to research.data.build_pretraining_data) and spm.vocab.
"""
import os
import re

import numpy as np
import sentencepiece as spm

from research.data import unigram_encoder

PAD_ID, PAD = 0, "[PAD]"
UNK_ID, UNK = 1, "[UNK]"
CLS_ID, CLS = 2, "[CLS]"
SEP_ID, SEP = 3, "[SEP]"
MASK_ID, MASK = 4, "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)  # indexed by id

WORD_START = "\u2581"  # '▁', sentencepiece's marker of a preceding space


def train_sentencepiece(input_files, model_prefix, vocab_size=8000, model_type="unigram",
                        input_sentence_size=200_000, seed=0):
    """Trains a SentencePiece model whose special tokens sit at the ids above.

    Training is bounded and repeatable: at most `input_sentence_size` lines, sampled (the sample
    seeded by `seed`) when the input holds more; it uses every CPU. Multi-threaded unigram training
    can still differ in rare ties between runs.

    Args:
      input_files: a path or a list of paths of plain UTF-8 text, one sentence or paragraph a line.
      model_prefix: where to write `{model_prefix}.model` and `{model_prefix}.vocab`.
      vocab_size: number of pieces, the 5 special tokens included.
      model_type: 'unigram', 'bpe', 'char' or 'word'.
      input_sentence_size: the most lines used for training.
      seed: seeds sentencepiece's sampling.

    Returns:
      The path of the trained `.model` file.

    Raises:
      FileNotFoundError: an input file does not exist.
      ValueError: `vocab_size` is more than the text can fill (the message gives the largest value).
    """
    if isinstance(input_files, (str, os.PathLike)):
        input_files = [input_files]
    input_files = [os.fspath(path) for path in input_files]
    for path in input_files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"sentencepiece training input not found: {path}")
    spm.set_random_generator_seed(seed)
    try:
        _train(input_files, model_prefix, vocab_size, model_type, input_sentence_size)
    except RuntimeError as error:
        too_high = _VOCAB_TOO_HIGH.search(str(error))
        if not too_high:
            raise
        limit = int(too_high.group(1))
        raise ValueError(
            f"vocab_size={vocab_size} is too large for this text: sentencepiece can make at most "
            f"{limit} pieces from {', '.join(input_files)}. Pass vocab_size={limit} or less "
            f"(--vocab_size={limit} on the command line), or train on more text.") from error
    return f"{os.fspath(model_prefix)}.model"


# sentencepiece's own message when the text cannot fill the vocabulary.
_VOCAB_TOO_HIGH = re.compile(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)")


def _train(input_files, model_prefix, vocab_size, model_type, input_sentence_size):
    spm.SentencePieceTrainer.train(
        input=input_files,
        model_prefix=os.fspath(model_prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        pad_id=PAD_ID, pad_piece=PAD,
        unk_id=UNK_ID, unk_piece=UNK,
        bos_id=CLS_ID, bos_piece=CLS,
        eos_id=SEP_ID, eos_piece=SEP,
        control_symbols=[MASK],
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )


class Tokenizer:
    """Encodes text to ids and back with a model trained by `train_sentencepiece`."""

    def __init__(self, model_path):
        """Loads `model_path`; raises FileNotFoundError naming it when it is missing, and
        ValueError when its special tokens are not at the ids this module fixes."""
        model_path = os.fspath(model_path)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"sentencepiece model not found: {model_path}")
        self.model_path = model_path
        self._sp = spm.SentencePieceProcessor(model_file=model_path)
        self._check_and_index()

    def _check_and_index(self):
        model_path = self.model_path
        pieces = tuple(self._sp.id_to_piece(i) for i in range(min(len(SPECIAL_TOKENS),
                                                                   self.vocab_size)))
        if pieces != SPECIAL_TOKENS:
            raise ValueError(f"{model_path} has special tokens {pieces}, expected {SPECIAL_TOKENS}; "
                             "train it with research.data.tokenizer.train_sentencepiece")
        self._word_starts = np.array(
            [self._sp.id_to_piece(i).startswith(WORD_START) and not self._is_special(i)
             for i in range(self.vocab_size)], dtype=bool)
        self._unigram = unigram_encoder.build(self._sp)

    def __getstate__(self):
        """Pickles as the model's bytes, so that worker processes get the same model without
        reading the file again."""
        return {"model_path": self.model_path, "model_proto": self._sp.serialized_model_proto()}

    def __setstate__(self, state):
        self.model_path = state["model_path"]
        self._sp = spm.SentencePieceProcessor(model_proto=state["model_proto"])
        self._check_and_index()

    def _is_special(self, i):
        return self._sp.is_control(i) or self._sp.is_unknown(i)

    @property
    def vocab_size(self):
        """Number of ids, special tokens included."""
        return self._sp.get_piece_size()

    pad_id = property(lambda self: PAD_ID, doc="Id of [PAD] (int).")
    unk_id = property(lambda self: UNK_ID, doc="Id of [UNK] (int).")
    cls_id = property(lambda self: CLS_ID, doc="Id of [CLS] (int).")
    sep_id = property(lambda self: SEP_ID, doc="Id of [SEP] (int).")
    mask_id = property(lambda self: MASK_ID, doc="Id of [MASK] (int).")

    def encode(self, text):
        """Returns the ids (list[int]) of `text`, without special tokens."""
        return self._sp.encode(text)

    def encode_batch(self, texts, num_threads=None):
        """Returns one id list per text (list[list[int]]), encoded on `num_threads` threads
        (default: every CPU)."""
        return self._sp.encode(list(texts), num_threads=num_threads or os.cpu_count() or 1)

    def encode_flat(self, texts, num_threads=None):
        """Returns `(tokens, lengths)`: the ids of every text as `encode_batch` gives them, one after
        the other (int32 [sum of lengths]), and their counts (int64 [len(texts)]). Printable-ASCII
        texts go through the exact native unigram encoder when the model has one (much faster; see
        research/data/unigram_encoder.py), the others through sentencepiece on `num_threads` threads."""
        from research.data import _native  # pylint: disable=import-outside-toplevel
        texts = list(texts)
        num_threads = num_threads or os.cpu_count() or 1
        if self._unigram is None:
            tokens, lengths = _native.flatten_ids(self._sp.encode(texts, num_threads=num_threads))
            return tokens, lengths
        return unigram_encoder.encode_flat(self._sp, self._unigram, texts, num_threads)

    def encode_with_word_starts(self, text):
        """Returns `(ids, starts)`: list[int] and list[bool], starts[i] telling whether ids[i]
        begins a word (its piece starts with '▁'), as whole-word masking needs."""
        ids = self.encode(text)
        return ids, self._word_starts[ids].tolist()

    def decode(self, ids):
        """Returns the text of `ids` (a sequence of ints); control ids decode to nothing."""
        return self._sp.decode([int(i) for i in ids])

    def id_to_piece(self, i):
        """Returns the piece (str) of id `i`."""
        return self._sp.id_to_piece(int(i))

    def word_start_table(self):
        """Returns bool [vocab_size]: True for ids whose piece begins a word, False for the
        special ids; a copy, so callers may keep or change it."""
        return self._word_starts.copy()


def main(argv):
    """`python -m research.data.tokenizer`: trains a model (see the module docstring)."""
    del argv  # unused
    from absl import flags  # pylint: disable=import-outside-toplevel

    from research.data import text_input  # pylint: disable=import-outside-toplevel
    flag_values = flags.FLAGS
    model = train_sentencepiece(text_input.expand_input_pattern(flag_values.input), flag_values.model_prefix,
                                vocab_size=flag_values.vocab_size, model_type=flag_values.model_type,
                                input_sentence_size=flag_values.input_sentence_size,
                                seed=flag_values.seed)
    print(f"wrote {model} ({flag_values.vocab_size} pieces) and {flag_values.model_prefix}.vocab; "
          f"build records with --spm_model={model}")


def _define_flags():
    from absl import flags  # pylint: disable=import-outside-toplevel
    flags.DEFINE_string("input", None, "Text files to train on: globs joined by commas.", required=True)
    flags.DEFINE_string("model_prefix", None, "Writes {model_prefix}.model and .vocab.", required=True)
    flags.DEFINE_integer("vocab_size", 8000, "Number of pieces, the 5 special tokens included.")
    flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe", "char", "word"], "Model type.")
    flags.DEFINE_integer("input_sentence_size", 200_000, "The most lines used for training.")
    flags.DEFINE_integer("seed", 0, "Seed of sentencepiece's sampling.")


if __name__ == "__main__":
    import sys  # pylint: disable=import-outside-toplevel

    from absl import app  # pylint: disable=import-outside-toplevel
    _define_flags()
    try:
        app.run(main)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
