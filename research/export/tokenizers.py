"""Which in-graph tokenizer reads a given vocabulary file.

`graph_tokenizer_for(path, lower_case)` picks a `GraphTokenizer` by the file: a sentencepiece `.model`
(research/export/sentencepiece_graph.py) or a WordPiece `vocab.txt` (research/export/wordpiece_graph.py,
lower-cased and accent-stripped when lower_case is True, as the model's data config says). Another kind of
vocabulary plugs in with `register(description, matches, build)`.
"""
from typing import Callable

from research.export.graph_tokenizer import GraphTokenizer
from research.export.sentencepiece_graph import SentencepieceGraphTokenizer
from research.export.wordpiece_graph import WordPieceGraphTokenizer

Builder = Callable[[str, bool], GraphTokenizer]  # (path, lower_case) -> tokenizer

_BUILDERS: list[tuple[str, Callable[[str], bool], Builder]] = [
    ("sentencepiece (.model)", lambda path: path.endswith(".model"),
     lambda path, lower_case: SentencepieceGraphTokenizer(path)),  # its normalization is in the model
    ("WordPiece (vocab.txt or another .txt)", lambda path: path.endswith(".txt"),
     lambda path, lower_case: WordPieceGraphTokenizer(path, lower_case=lower_case)),
]


def register(description: str, matches: Callable[[str], bool], build: Builder) -> None:
    """Adds a kind of vocabulary: `matches(path)` recognizes its files, `build(path, lower_case)` makes the
    tokenizer."""
    _BUILDERS.append((description, matches, build))


def graph_tokenizer_for(path: str, lower_case: bool = True) -> GraphTokenizer:
    """The in-graph tokenizer of the vocabulary file `path`.

    Args:
      path: the vocabulary file.
      lower_case: for kinds whose normalization is not in the file (WordPiece): lower-case and strip
        accents ('uncased' models).

    Raises:
      ValueError: no registered kind recognizes the file (the message lists the kinds).
    """
    for _, matches, build in _BUILDERS:
        if matches(path):
            return build(path, lower_case)
    kinds = ", ".join(description for description, _, _ in _BUILDERS)
    raise ValueError(f"no in-graph tokenizer reads {path!r}; supported: {kinds}")
