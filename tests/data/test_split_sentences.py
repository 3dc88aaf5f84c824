"""split_sentences against its specification written as one regular expression (slow, obviously right)."""
import re

import numpy as np
import pytest

from hypothesis import given, settings, strategies as st

from research.data import demo_data, text_input
from research.data.text_input import ABBREVIATIONS, split_sentences

# A break is the whitespace after '.', '!' or '?' (optionally followed by one closing quote or
# parenthesis), unless the text before it ends in an abbreviation's '.' (capitalized titles without
# a word boundary, so '_Mr.' counts) or a single capital initial other than 'I'.
_SPECIFICATION = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)]))"
    + "".join(rf"(?<!{word}\.)" if word[0].isupper() else rf"(?<!\b{word}\.)" for word in ABBREVIATIONS)
    + r"(?<!\b[A-HJ-Z]\.)\s+")


def specified_sentences(text):
    return [s for s in (part.strip() for part in _SPECIFICATION.split(text)) if s]


_PIECES = ["Mr", "Mrs", "St", "vs", "viz", "xvs", "_Mr", "J", "I", "a", "Ab", "é", "日", "3", "_",
           " ", "  ", "\t", "\n", "\u00a0", ".", ".", "!", "?", "'", '"', "\u201d", "\u2019", ")", "("]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=24))
def test_matches_the_specification_on_random_texts(pieces):
    text = "".join(pieces)
    assert split_sentences(text) == specified_sentences(text)


def test_matches_the_specification_on_the_shipped_text():
    stats = text_input.TextStats()
    austen = demo_data.shipped_file(demo_data.AUSTEN_TEXT)
    blocks = text_input.read_blocks([austen], text_input.DocumentBoundary(), 4 << 20)
    documents = [d for block in blocks for piece in block
                 for d in text_input.documents_of_piece(piece, text_input.DocumentBoundary(), stats)]
    assert len(documents) > 10000
    assert [split_sentences(d) for d in documents] == [specified_sentences(d) for d in documents]


def python_documents_and_sentences(block, boundary):
    documents = [d for piece in block for d in text_input.documents_of_piece(piece, boundary, text_input.TextStats())]
    return documents, [s for d in documents for s in split_sentences(d)], [len(split_sentences(d)) for d in documents]


def native_documents_and_sentences(block, boundary):
    documents, sentences, counts = text_input.split_documents(block, boundary, text_input.TextStats())
    assert counts.dtype == np.int64
    return documents, sentences, counts.tolist()


# Blank lines of every kind the document splitter knows, Unicode whitespace (no-break, em and
# ideographic spaces, the file separator \x1c and next-line \x85 that str.split counts) and word
# characters of other scripts and planes, where \b and str.split must agree with the native code, in
# each of Python's string layouts (Latin-1, 16-bit, 32-bit).
_NATIVE_PIECES = _PIECES + ["\u2003", "\u3000", "\x1c", "\x85", "\r", "\x0b", "\x0c", "\n\n", "\n \n", "Ω",
                            "٣", "ǅ", "ª", "\U0001d400", "\U0001f600"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_NATIVE_PIECES), max_size=30), max_size=4))
def test_native_splitter_equals_the_python_one(pieces):
    block = ["".join(p).encode("utf-8") for p in pieces]
    boundary = text_input.DocumentBoundary()
    assert native_documents_and_sentences(block, boundary) == python_documents_and_sentences(block, boundary)


def test_native_splitter_equals_the_python_one_on_the_shipped_text():
    austen = demo_data.shipped_file(demo_data.AUSTEN_TEXT)
    for boundary in (text_input.DocumentBoundary(), text_input.DocumentBoundary("file"),
                     text_input.DocumentBoundary("separator", r"CHAPTER [IVXLC]+\.?")):
        sentences = 0
        for block in text_input.read_blocks([austen], boundary, 1 << 20):
            native = native_documents_and_sentences(block, boundary)
            assert native == python_documents_and_sentences(block, boundary)
            sentences += len(native[1])
        assert sentences > 30000


# A blank line is only spaces, \t, \r, \f or \v between two newlines; other whitespace (\x1c, \x85, em
# space) makes a line that is not blank.
_SEPARATORS = ["\n\n", "\n \n", "\n\t\n", "\n\r\n", "\n\x0b\n", "\n\x0c\n", "\n \t\r\x0b\x0c\n", "\n\n\n", "\r\n\r\n",
               "\n\n \n\n", "\n\x1c\n", "\n\x85\n", "\n\u2003\n", "\n \x0b x\n", "\n"]


@pytest.mark.parametrize("separator", _SEPARATORS)
def test_native_blank_lines_equal_the_python_ones(separator):
    boundary = text_input.DocumentBoundary()
    for text in (f"One. Two{separator}Three.", f"{separator}One{separator}", f"é{separator}日{separator}\U0001f600"):
        block = [text.encode("utf-8"), (text + text).encode("utf-8")]
        assert native_documents_and_sentences(block, boundary) == python_documents_and_sentences(block, boundary)
