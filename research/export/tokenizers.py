"""Which in-graph tokenizer reads a given vocabulary file.

`graph_tokenizer_for(path)` picks a `GraphTokenizer` by the file: a sentencepiece `.model` today.
A new kind of vocabulary (WordPiece's `vocab.txt`, say) plugs in with `register(matches, build)`.
"""
from typing import Callable

from research.export.graph_tokenizer import GraphTokenizer
from research.export.sentencepiece_graph import SentencepieceGraphTokenizer

_BUILDERS: list[tuple[str, Callable[[str], bool], Callable[[str], GraphTokenizer]]] = [
    ("sentencepiece (.model)", lambda path: path.endswith(".model"), SentencepieceGraphTokenizer),
]


def register(description: str, matches: Callable[[str], bool], build: Callable[[str], GraphTokenizer]) -> None:
    """Adds a kind of vocabulary: `matches(path)` recognizes its files, `build(path)` makes the tokenizer."""
    _BUILDERS.append((description, matches, build))


def graph_tokenizer_for(path: str) -> GraphTokenizer:
    """The in-graph tokenizer of the vocabulary file `path`.

    Raises:
      ValueError: no registered kind recognizes the file (the message lists the kinds).
    """
    for _, matches, build in _BUILDERS:
        if matches(path):
            return build(path)
    kinds = ", ".join(description for description, _, _ in _BUILDERS)
    raise ValueError(f"no in-graph tokenizer reads {path!r}; supported: {kinds}")
