"""Opens the tokenizer of a model: a sentencepiece model or a WordPiece `vocab.txt`.

Both kinds answer `encode`, `encode_batch`, `encode_with_word_starts`, `word_start_table`, `vocab_size`
and the special ids `pad_id`, `unk_id`, `cls_id`, `sep_id`, `mask_id`, which the input pipelines read
instead of assuming where [PAD] ... [MASK] are.
"""
from research.data import tokenizer as sentencepiece_tokenizer


def load_tokenizer(spm_model="", vocab_file="", lower_case=True):
    """Returns `research.data.tokenizer.Tokenizer(spm_model)` or
    `research.data.wordpiece.WordPieceTokenizer(vocab_file, lower_case)`: exactly one path must be given.

    Raises:
      ValueError: both or neither of spm_model and vocab_file.
      FileNotFoundError: the file does not exist.
    """
    if bool(spm_model) == bool(vocab_file):
        raise ValueError("give exactly one tokenizer: spm_model (a sentencepiece model) or vocab_file (a "
                         f"WordPiece vocab.txt), got spm_model={spm_model!r}, vocab_file={vocab_file!r}")
    if spm_model:
        return sentencepiece_tokenizer.Tokenizer(spm_model)
    from research.data import wordpiece  # needs the optional `tokenizers` package
    return wordpiece.WordPieceTokenizer(vocab_file, lower_case=lower_case)
