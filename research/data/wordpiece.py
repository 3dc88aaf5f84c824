"""BERT's WordPiece tokenizer from a `vocab.txt`, on Hugging Face's `tokenizers` library.

The same interface as `research.data.tokenizer.Tokenizer` (sentencepiece): `encode`, `encode_batch`,
`encode_with_word_starts`, `decode`, `id_to_piece`, `word_start_table`, `vocab_size`, and the special ids
`pad_id`, `unk_id`, `cls_id`, `sep_id`, `mask_id`, which here are wherever the vocabulary puts
`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]` and `[MASK]` (0, 100, 101, 102, 103 in BERT's uncased vocabulary).

Text goes through BERT's basic tokenization (control characters dropped, whitespace unified, Chinese
characters split, optionally lower-cased and accent-stripped, split on whitespace and punctuation) and
then greedy longest-match-first WordPiece, continuation pieces prefixed with `##`; words longer than
100 characters, or with no match, become `[UNK]`. The special tokens written literally in the text
(`[MASK]`, say) are recognized as such, as `transformers`' BertTokenizer does. The ids equal
BertTokenizer's on the shipped texts (tests/data/test_wordpiece.py, against a committed fixture).

The `tokenizers` package is an optional dependency (the `interop` extra): imported when a
WordPieceTokenizer is built.
"""
import os

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION = "##"
MAX_INPUT_CHARS_PER_WORD = 100


def read_vocab(vocab_file):
    """Returns the tokens of a `vocab.txt` (list[str], one per line, the id being the line number).

    Raises FileNotFoundError naming the file, and ValueError when it is empty.
    """
    vocab_file = os.fspath(vocab_file)
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"WordPiece vocabulary not found: {vocab_file}")
    with open(vocab_file, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    if not tokens:
        raise ValueError(f"WordPiece vocabulary {vocab_file} is empty")
    return tokens


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("research.data.wordpiece needs the 'tokenizers' package: "
                          "pip install 'research[interop]' (or pip install tokenizers)") from None
    return tokenizers


class WordPieceTokenizer:
    """Encodes text to WordPiece ids and back.

    Args:
      vocab_file: BERT's `vocab.txt`, one token per line; it must hold [PAD], [UNK], [CLS], [SEP], [MASK].
      lower_case: lower-case the text before splitting it (True for 'uncased' models).
      strip_accents: remove accents (NFD, then drop combining marks); None follows `lower_case`,
        as in BERT.

    Raises:
      FileNotFoundError: no such vocabulary file.
      ValueError: a special token is missing from the vocabulary (named), or a bad flag.
    """

    def __init__(self, vocab_file, lower_case=True, strip_accents=None):
        if not isinstance(lower_case, bool):
            raise ValueError(f"WordPieceTokenizer: lower_case must be True or False, got {lower_case!r}")
        if strip_accents is not None and not isinstance(strip_accents, bool):
            raise ValueError(f"WordPieceTokenizer: strip_accents must be True, False or None, got {strip_accents!r}")
        tokenizers = _import_tokenizers()
        self.vocab_file = os.fspath(vocab_file)
        self.lower_case = lower_case
        self.strip_accents = lower_case if strip_accents is None else strip_accents
        self._tokens = read_vocab(self.vocab_file)
        ids = {}
        for i, token in enumerate(self._tokens):
            ids[token] = i  # a duplicated token keeps its last id, as BertTokenizer's load_vocab does
        missing = [token for token in SPECIAL_TOKENS if token not in ids]
        if missing:
            raise ValueError(f"WordPiece vocabulary {self.vocab_file} lacks the special token(s) {missing}")
        self._ids = ids
        tokenizer = tokenizers.Tokenizer(tokenizers.models.WordPiece(
            ids, unk_token="[UNK]", continuing_subword_prefix=CONTINUATION,
            max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
        tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=self.strip_accents, lowercase=lower_case)
        tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = tokenizers.decoders.WordPiece(prefix=CONTINUATION)
        tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
        self._tokenizer = tokenizer
        self._word_starts = np.array([not token.startswith(CONTINUATION) and token not in SPECIAL_TOKENS
                                      for token in self._tokens], dtype=bool)
        for token in SPECIAL_TOKENS:
            self._word_starts[ids[token]] = False

    @property
    def vocab_size(self):
        """Number of ids (lines of the vocabulary)."""
        return len(self._tokens)

    @property
    def pad_id(self):
        return self._ids["[PAD]"]

    @property
    def unk_id(self):
        return self._ids["[UNK]"]

    @property
    def cls_id(self):
        return self._ids["[CLS]"]

    @property
    def sep_id(self):
        return self._ids["[SEP]"]

    @property
    def mask_id(self):
        return self._ids["[MASK]"]

    def vocab(self):
        """The tokens (list[str]) indexed by id: a copy."""
        return list(self._tokens)

    def encode(self, text):
        """Returns the ids (list[int]) of `text`, without [CLS]/[SEP] around them."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts):
        """Returns one id list per text (list[list[int]]), encoded on every CPU."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode_with_word_starts(self, text):
        """Returns `(ids, starts)`: list[int] and list[bool], starts[i] telling whether ids[i] begins a
        word (its piece does not start with '##'), as whole-word masking needs."""
        ids = self.encode(text)
        return ids, self._word_starts[ids].tolist()

    def decode(self, ids):
        """Returns the text of `ids`: pieces joined by spaces, '##' continuations glued, special ids dropped."""
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_to_piece(self, i):
        """Returns the token (str) of id `i`."""
        return self._tokens[int(i)]

    def word_start_table(self):
        """Returns bool [vocab_size]: True for ids whose token begins a word, False for '##' pieces and
        the special tokens; a copy."""
        return self._word_starts.copy()
