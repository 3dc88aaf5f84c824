"""Reading plain-text corpora as a stream: files (plain, .gz, .bz2) -> blocks -> documents -> sentences.

A corpus is read in *blocks* of whole documents (a few MB each), so that memory never holds more than
a block per worker however large the files are. A block is a list of byte strings ("pieces"), each
the text of consecutive whole documents of one file; the end of a file always ends a document.
Where a document ends is the user's choice (`DocumentBoundary`):
  blank_line  a line that is empty or only whitespace ends a document (the default);
  file        every file is one document;
  separator   a line matching a regular expression (over the whole stripped line, e.g.
              'CHAPTER [IVXLC]+' or '<doc>') ends a document; the separator line itself is dropped.
Within a document, lines are joined with spaces and split into sentences (`split_sentences`). Lines
that are not valid UTF-8 are skipped and counted, never fatal.

Only the documents matter downstream (the record builder orders documents by a hash of their text),
so how a stream is cut into blocks never changes the records.
"""
import bz2
import dataclasses
import glob
import gzip
import os
import re

BOUNDARIES = ("blank_line", "file", "separator")

# Words whose '.' does not end a sentence: titles before a name, and a few abbreviations.
ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "St", "Esq", "Messrs", "Mme", "Mlle", "Capt", "Col", "Gen",
                 "Lt", "Sgt", "Rev", "Prof", "Hon", "Sr", "Jr", "vs", "viz")
# A sentence ends at the whitespace after '.', '!' or '?', optionally followed by one closing quote or
# parenthesis; a bare '.' does not end one after one of ABBREVIATIONS or a single capital initial
# ('J. Smith'; 'I.' still ends a sentence). The pattern starts with the punctuation, so its
# lookbehinds run at punctuation only (3x faster than trying them at every whitespace).
_CLOSERS = "\"'\u201d\u2019)"
_TITLES = [word for word in ABBREVIATIONS if word[0].isupper()]
_WORDS = [word for word in ABBREVIATIONS if not word[0].isupper()]
_SENTENCE_END = re.compile(
    rf"[.!?](?:[{_CLOSERS}]|(?<=[!?])|"
    # No \b before a capitalized word, so that '_Mr.' (italics markup) counts too.
    + "".join(rf"(?<!{word}\.)" for word in _TITLES) + "".join(rf"(?<!\b{word}\.)" for word in _WORDS)
    + r"(?<!\b[A-HJ-Z]\.))\s+")

_BLANK_LINE = re.compile(rb"\n[ \t\r\f\v]*\n")
# Compressed files count this many bytes of text per byte on disk when sizing the shuffle buckets.
COMPRESSION_RATIO = {".gz": 4, ".bz2": 5}


def split_sentences(text):
    """Splits a document's text into sentences (list[str], stripped, none empty)."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start() + (2 if text[match.start() + 1] in _CLOSERS else 1)
        sentence = text[start:end].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    sentence = text[start:].strip()
    return sentences + [sentence] if sentence else sentences


@dataclasses.dataclass(frozen=True)
class DocumentBoundary:
    """Where documents end: `kind` in BOUNDARIES; `separator` (a regex) for kind='separator'."""
    kind: str = "blank_line"
    separator: str | None = None

    def __post_init__(self):
        if self.kind not in BOUNDARIES:
            raise ValueError(f"unknown document boundary '{self.kind}'; expected one of "
                             f"{', '.join(BOUNDARIES)}")
        if (self.kind == "separator") != bool(self.separator):
            raise ValueError("document_separator (a regular expression matching a whole line) is "
                             "needed with document_boundary='separator' and only then, got "
                             f"boundary '{self.kind}' and separator {self.separator!r}")
        if self.separator:
            try:
                re.compile(self.separator)
            except re.error as error:
                raise ValueError(f"document_separator {self.separator!r} is not a regular "
                                 f"expression: {error}") from error

    def separator_lines(self):
        """The compiled pattern of whole separator lines (str), for re.split."""
        return re.compile(rf"(?m)^[ \t]*(?:{self.separator})[ \t\r]*$")

    def describe(self):
        """A short phrase for logs and metadata."""
        return {"blank_line": "a blank line ends a document", "file": "one document per file",
                "separator": f"a line matching {self.separator!r} ends a document"}[self.kind]


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


def estimated_text_bytes(path):
    """Bytes of text in `path`, estimated from its size on disk for compressed files."""
    return os.path.getsize(path) * COMPRESSION_RATIO.get(os.path.splitext(path)[1], 1)


class _CountingFile:
    """A binary file that counts the bytes read from disk (compressed bytes for .gz/.bz2)."""

    def __init__(self, path):
        self._raw = open(path, "rb")  # pylint: disable=consider-using-with
        extension = os.path.splitext(path)[1]
        if extension == ".gz":
            self._text = gzip.GzipFile(fileobj=self._raw)
        elif extension == ".bz2":
            self._text = bz2.BZ2File(self._raw)
        else:
            self._text = self._raw

    def read(self, size):
        return self._text.read(size)

    def disk_position(self):
        return self._raw.tell()

    def close(self):
        self._text.close()
        self._raw.close()


def _cut(data, boundary, separator_line):
    """Position in `data` after its last document boundary (0 when it has none)."""
    if boundary.kind == "blank_line":
        tail_start = max(0, len(data) - (1 << 16))
        for start in (tail_start, 0) if tail_start else (0,):
            last = None
            for last in _BLANK_LINE.finditer(data, start):
                pass
            if last is not None:
                return last.end()
        return 0
    last = None
    for last in separator_line.finditer(data):
        pass
    return last.start() if last is not None else 0


def read_pieces(path, boundary, piece_bytes, on_progress=None):
    """Yields the text of `path` (bytes) in pieces of about `piece_bytes` that end at document
    boundaries (the last piece at the end of the file); with boundary 'file', the whole file.

    Args:
      on_progress: optional callable(bytes read from disk since the last call).
    """
    reader = _CountingFile(path)
    try:
        yield from pieces_of_stream(reader, boundary, piece_bytes, on_progress)
    finally:
        reader.close()


def pieces_of_stream(reader, boundary, piece_bytes, on_progress=None):
    """`read_pieces` of an open binary stream of text (`reader.read(n)`); `on_progress` needs
    `reader.disk_position()`."""
    separator_line = None
    if boundary.kind == "separator":
        separator_line = re.compile(
            rb"(?m)^[ \t]*(?:" + boundary.separator.encode("utf-8") + rb")[ \t\r]*$")
    reported = 0
    pending = b""
    while True:
        data = reader.read(piece_bytes)
        if on_progress is not None:
            position = reader.disk_position()
            on_progress(position - reported)
            reported = position
        if not data:
            break
        pending += data
        if boundary.kind == "file":
            continue
        cut = _cut(pending, boundary, separator_line)
        if cut:
            yield pending[:cut]
            pending = pending[cut:]
    if pending:
        yield pending


def read_blocks(paths, boundary, block_bytes, on_progress=None):
    """Yields blocks (list[bytes] of pieces, see the module docstring) of about `block_bytes` of
    text from `paths`, in order; a block never splits a document."""
    pieces = (piece for path in paths for piece in read_pieces(path, boundary, block_bytes, on_progress))
    yield from group_into_blocks(pieces, block_bytes)


def group_into_blocks(pieces, block_bytes):
    """Yields consecutive `pieces` (bytes, each whole documents) gathered into lists of at least
    `block_bytes` (the last one may hold less)."""
    block, size = [], 0
    for piece in pieces:
        block.append(piece)
        size += len(piece)
        if size >= block_bytes:
            yield block
            block, size = [], 0
    if block:
        yield block


class TextStats:
    """What the reader saw: documents and lines skipped, bytes of text."""

    def __init__(self):
        self.bad_lines = 0
        self.text_bytes = 0

    def add(self, other):
        self.bad_lines += other.bad_lines
        self.text_bytes += other.text_bytes


def _valid_text(piece, stats):
    """The text of `piece` (bytes) without its lines that are not valid UTF-8 (counted)."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        lines = []
        for raw in piece.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                stats.bad_lines += 1
        return "\n".join(lines)


_BLANK_LINE_TEXT = re.compile(r"\n[ \t\r\f\v]*\n")


def document_parts_of_piece(piece, boundary, stats):
    """Returns the text of each document of one piece (bytes) as it is (list[str], possibly blank).

    Lines that are not valid UTF-8 are skipped and counted in `stats.bad_lines`.
    """
    stats.text_bytes += len(piece)
    text = _valid_text(piece, stats)
    if boundary.kind == "blank_line":
        return _BLANK_LINE_TEXT.split("\n" + text + "\n")
    if boundary.kind == "separator":
        return boundary.separator_lines().split(text)
    return [text]


def normalize_whitespace(text):
    """`text` (str) with every run of whitespace made one space and none at either end."""
    return " ".join(text.split())


def documents_of_piece(piece, boundary, stats):
    """Returns the documents of one piece (bytes) as their text (list[str], non-empty), lines
    joined and every run of whitespace made one space (see document_parts_of_piece)."""
    return [document for document in map(normalize_whitespace, document_parts_of_piece(piece, boundary, stats))
            if document]


def split_documents(block, boundary, stats):
    """The documents of a block and their sentences, in native code (ops/native/sentences.cc).

    Same result as documents_of_piece and split_sentences, about 3x faster (they stay the readable
    definition; tests compare the two).

    Args:
      block: list[bytes] of pieces.

    Returns:
      (documents, sentences, sentence_counts): documents list[str] (non-empty, whitespace-normalized);
      sentences list[str], those of every document in order; sentence_counts int64 [len(documents)].
    """
    from research.data import _native  # pylint: disable=import-outside-toplevel
    if boundary.kind == "blank_line":  # the blank lines are found in native code too
        stats.text_bytes += sum(len(piece) for piece in block)
        return _native.split_documents([_valid_text(piece, stats) for piece in block], _TITLES, _WORDS,
                                       blank_lines=True)
    parts = [part for piece in block for part in document_parts_of_piece(piece, boundary, stats)]
    return _native.split_documents(parts, _TITLES, _WORDS)


def read_documents(paths, stats, boundary=DocumentBoundary(), block_bytes=4 << 20):
    """Yields the documents of `paths` in order, each a list[str] of sentences (possibly empty)."""
    for block in read_blocks(paths, boundary, block_bytes):
        for piece in block:
            for document in documents_of_piece(piece, boundary, stats):
                yield split_sentences(document)
