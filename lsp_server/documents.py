"""Open documents: text, version, language, and LSP positions <-> string offsets.

Why not pygls' workspace documents: pygls 2.1.1 splits lines with ``str.splitlines``, which
also breaks at form feeds, U+2028 and other characters that LSP does not treat as line ends,
so positions drift in files that contain them (form feeds are common in old Python and C
sources). LSP line ends are exactly ``\\r\\n``, ``\\r`` and ``\\n``; this module uses only those.

Columns are counted in the position encoding negotiated at ``initialize`` (UTF-16 unless the
client offered UTF-8 or UTF-32). A column past the end of its line means the end of the line;
a column inside a surrogate pair moves past the pair.

Storage: a document is a list of chunks of about ``CHUNK_CHARS`` characters, each with its
count of line breaks, plus running sums of both. An edit rewrites the one or two chunks it
touches and the running sums (a few thousand integers for 100 MB), so a keystroke costs in
proportion to the edit and the chunk, not the document: a 100 MB document used to cost a
100 MB string copy and a line-index rebuild per keystroke (seconds). A chunk boundary never
falls between ``\\r`` and ``\\n``, so each chunk's line breaks can be counted on their own.
The whole text (``text``) is joined only when asked for, and kept until the next edit;
completions use ``excerpt`` instead.
"""

from __future__ import annotations

import bisect
import logging
import re
from itertools import accumulate
from typing import Literal

from lsprotocol import types

log = logging.getLogger(__name__)

Encoding = Literal["utf-8", "utf-16", "utf-32"]
CHUNK_CHARS = 16384  # target chunk size; chunks stay between a quarter and twice this
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _units(char: str, encoding: Encoding) -> int:
    if encoding == "utf-16":
        return 2 if ord(char) > 0xFFFF else 1
    if encoding == "utf-8":
        return len(char.encode("utf-8"))
    return 1


def column_to_index(line: str, column: int, encoding: Encoding) -> int:
    """Index into ``line`` (no line break in it) of a column given in ``encoding`` units."""
    if encoding == "utf-32" or line.isascii():
        return max(0, min(column, len(line)))
    units = 0
    for index, char in enumerate(line):
        if units >= column:
            return index
        units += _units(char, encoding)
    return len(line)


def index_to_column(line: str, index: int, encoding: Encoding) -> int:
    head = line[:index]
    if encoding == "utf-32" or head.isascii():
        return len(head)
    return sum(_units(char, encoding) for char in head)


def _count_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _split(text: str) -> list[str]:
    """``text`` in pieces of about ``CHUNK_CHARS``, never cut between ``\\r`` and ``\\n``."""
    if len(text) <= 2 * CHUNK_CHARS:
        return [text]
    pieces, start = [], 0
    while len(text) - start > 2 * CHUNK_CHARS:
        cut = start + CHUNK_CHARS
        if text[cut - 1] == "\r" and text[cut] == "\n":
            cut += 1
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


class Document:
    """One open text document. Mutated only on the event loop (didOpen/didChange).

    ``version`` is the client's version as sent. Whether an answer is still for the latest
    text is decided by ``scheduler.LatestWins`` (an edit supersedes), not by versions."""

    def __init__(self, uri: str, text: str, version: int = 0, language_id: str = ""):
        self.uri = uri
        self.version = version
        self.language_id = language_id
        self._eol: str | None = None
        self._set_text(text)

    # -- storage ------------------------------------------------------------------------------

    def _set_text(self, text: str) -> None:
        self._chunks = _split(text)
        self._breaks = [_count_breaks(chunk) for chunk in self._chunks]
        self._ends: list[list[int] | None] = [None] * len(self._chunks)  # per chunk: its line-break ends, lazily
        self._reindex()
        self._text: str | None = None  # joined again only if asked for: one copy of a huge text, not two
        match = _LINE_BREAK.search(text)
        self._eol = match.group() if match else None

    def _reindex(self) -> None:
        self._char_starts = list(accumulate((len(chunk) for chunk in self._chunks), initial=0))
        self._break_starts = list(accumulate(self._breaks, initial=0))

    def _chunk_ends(self, index: int) -> list[int]:
        """Offsets within chunk ``index`` just after each of its line breaks."""
        ends = self._ends[index]
        if ends is None:
            ends = self._ends[index] = [match.end() for match in _LINE_BREAK.finditer(self._chunks[index])]
        return ends

    def _chunk_at(self, offset: int) -> int:
        """The chunk holding the character at ``offset`` (the last chunk at the end)."""
        return max(0, min(bisect.bisect_right(self._char_starts, offset) - 1, len(self._chunks) - 1))

    def __len__(self) -> int:
        return self._char_starts[-1]

    @property
    def text(self) -> str:
        """The whole text: joined on demand (O(document)) and kept until the next edit."""
        if self._text is None:
            self._text = "".join(self._chunks)
        return self._text

    def slice(self, start: int, end: int) -> str:
        """``text[start:end]`` at the cost of the slice, not the document."""
        start, end = max(0, start), min(end, len(self))
        if start >= end:
            return ""
        if self._text is not None:
            return self._text[start:end]
        first, last = self._chunk_at(start), self._chunk_at(end - 1)
        base = self._char_starts[first]
        if first == last:
            return self._chunks[first][start - base : end - base]
        parts = [self._chunks[first][start - base :], *self._chunks[first + 1 : last], self._chunks[last][: end - self._char_starts[last]]]
        return "".join(parts)

    def excerpt(self, offset: int, reach_chars: int) -> tuple[str, int]:
        """(text, base): the text from about ``reach_chars`` before ``offset`` to
        ``reach_chars`` after it, starting at a line start where that line is not itself
        longer than ``reach_chars``; ``base`` is the document offset of its first character."""
        low = max(0, offset - reach_chars)
        line_start = self.line_start(self.line_of(low))
        if low - line_start <= reach_chars:
            low = line_start
        return self.slice(low, offset + reach_chars), low

    # -- lines --------------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        return self._break_starts[-1] + 1

    @property
    def eol(self) -> str:
        """The document's line break (the first one seen), used for inserted text."""
        return self._eol or "\n"

    def line_start(self, line: int) -> int:
        """Offset where ``line`` starts (0 <= line < line_count)."""
        if line <= 0:
            return 0
        chunk = bisect.bisect_left(self._break_starts, line) - 1  # the chunk holding break number ``line``
        return self._char_starts[chunk] + self._chunk_ends(chunk)[line - self._break_starts[chunk] - 1]

    def line_of(self, offset: int) -> int:
        """The line holding ``offset``."""
        chunk = self._chunk_at(offset)
        return self._break_starts[chunk] + bisect.bisect_right(self._chunk_ends(chunk), offset - self._char_starts[chunk])

    def _line_span(self, line: int) -> tuple[int, int]:
        """(start, end) of a line's content, without its line break."""
        start = self.line_start(line)
        if line + 1 >= self.line_count:
            return start, len(self)
        end = self.line_start(line + 1)
        tail = self.slice(max(start, end - 2), end)
        return start, end - (2 if tail == "\r\n" else 1)

    def line_text(self, line: int) -> str:
        """The content of ``line`` without its line break ("" past the end)."""
        if not 0 <= line < self.line_count:
            return ""
        start, end = self._line_span(line)
        return self.slice(start, end)

    def offset_at(self, position: types.Position, encoding: Encoding = "utf-16") -> int:
        if position.line >= self.line_count:
            return len(self)
        start, end = self._line_span(max(0, position.line))
        column = max(0, position.character)
        # a column counts at least one unit per character, so the line's head is enough
        return start + column_to_index(self.slice(start, min(end, start + column)), column, encoding)

    def position_at(self, offset: int, encoding: Encoding = "utf-16") -> types.Position:
        offset = max(0, min(offset, len(self)))
        line = self.line_of(offset)
        start, end = self._line_span(line)
        head = self.slice(start, min(offset, end))
        return types.Position(line=line, character=index_to_column(head, len(head), encoding))

    # -- edits --------------------------------------------------------------------------------

    def apply_change(self, change: types.TextDocumentContentChangeEvent, encoding: Encoding = "utf-16") -> None:
        if isinstance(change, types.TextDocumentContentChangePartial):
            start = self.offset_at(change.range.start, encoding)
            end = max(start, self.offset_at(change.range.end, encoding))
            self.replace(start, end, change.text)
        else:
            self._set_text(change.text)

    def replace(self, start: int, end: int, new_text: str) -> None:
        """Replace ``text[start:end]`` with ``new_text``, touching only the chunks involved."""
        chunks = self._chunks
        first, last = self._chunk_at(start), self._chunk_at(max(start, end - 1))
        merged = chunks[first][: start - self._char_starts[first]] + new_text + chunks[last][end - self._char_starts[last] :]
        if len(merged) < CHUNK_CHARS // 4 and len(chunks) > last - first + 1:  # too small: join a neighbour
            if last + 1 < len(chunks):
                last += 1
                merged += chunks[last]
            else:
                first -= 1
                merged = chunks[first] + merged
        if first > 0 and merged.startswith("\n") and chunks[first - 1].endswith("\r"):  # keep \r\n in one chunk
            first -= 1
            merged = chunks[first] + merged
        if last + 1 < len(chunks) and merged.endswith("\r") and chunks[last + 1].startswith("\n"):
            last += 1
            merged += chunks[last]
        pieces = _split(merged) if merged or len(chunks) == last - first + 1 else []
        chunks[first : last + 1] = pieces
        self._breaks[first : last + 1] = [_count_breaks(piece) for piece in pieces]
        self._ends[first : last + 1] = [None] * len(pieces)
        self._reindex()
        self._text = None
        if self._eol is None and (match := _LINE_BREAK.search(new_text)):
            self._eol = match.group()


class DocumentStore:
    """The server's open documents, keyed by URI."""

    def __init__(self) -> None:
        self._documents: dict[str, Document] = {}

    def open(self, item: types.TextDocumentItem) -> Document:
        document = Document(item.uri, item.text, item.version, item.language_id)
        self._documents[item.uri] = document
        return document

    def change(self, params: types.DidChangeTextDocumentParams, encoding: Encoding) -> Document | None:
        document = self._documents.get(params.text_document.uri)
        if document is None:
            return None
        version = params.text_document.version
        if version <= document.version:
            # A client bug (LSP versions only grow). The change is still applied, so the text
            # stays what the client has; answers computed before it are dropped (the
            # didChange handler supersedes them, scheduler.LatestWins).
            log.warning(
                "didChange for %s has version %d, not newer than %d: applied anyway (the client's text wins); "
                "suggestions computed before it are dropped",
                params.text_document.uri, version, document.version,
            )  # fmt: skip
        for change in params.content_changes:
            document.apply_change(change, encoding)
        document.version = version
        return document

    def close(self, uri: str) -> None:
        self._documents.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self._documents.get(uri)

    def __len__(self) -> int:
        return len(self._documents)

    def version(self, uri: str) -> int | None:
        document = self._documents.get(uri)
        return None if document is None else document.version
