"""Open documents: text, version, language, and LSP positions <-> string offsets.

Why not pygls' workspace documents: pygls 2.1.1 splits lines with ``str.splitlines``, which
also breaks at form feeds, U+2028 and other characters that LSP does not treat as line ends,
so positions drift in files that contain them (form feeds are common in old Python and C
sources). LSP line ends are exactly ``\\r\\n``, ``\\r`` and ``\\n``; this module uses only those.

Columns are counted in the position encoding negotiated at ``initialize`` (UTF-16 unless the
client offered UTF-8 or UTF-32). A column past the end of its line means the end of the line;
a column inside a surrogate pair moves past the pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from lsprotocol import types

Encoding = Literal["utf-8", "utf-16", "utf-32"]
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


@dataclass
class Document:
    """One open text document. Mutated only on the event loop (didOpen/didChange)."""

    uri: str
    text: str
    version: int = 0
    language_id: str = ""
    _line_starts: list[int] | None = field(default=None, repr=False)

    @property
    def line_starts(self) -> list[int]:
        if self._line_starts is None:
            self._line_starts = [0] + [match.end() for match in _LINE_BREAK.finditer(self.text)]
        return self._line_starts

    @property
    def eol(self) -> str:
        """The document's line break (the first one found), used for inserted text."""
        match = _LINE_BREAK.search(self.text)
        return match.group() if match else "\n"

    def _line_span(self, line: int) -> tuple[int, int]:
        """(start, end) of a line's content, without its line break."""
        starts = self.line_starts
        start = starts[line]
        end = starts[line + 1] if line + 1 < len(starts) else len(self.text)
        while end > start and self.text[end - 1] in "\r\n":
            end -= 1
        return start, end

    def line_text(self, line: int) -> str:
        """The content of ``line`` without its line break ("" past the end)."""
        if not 0 <= line < len(self.line_starts):
            return ""
        start, end = self._line_span(line)
        return self.text[start:end]

    def offset_at(self, position: types.Position, encoding: Encoding = "utf-16") -> int:
        if position.line >= len(self.line_starts):
            return len(self.text)
        start, end = self._line_span(max(0, position.line))
        return start + column_to_index(self.text[start:end], position.character, encoding)

    def position_at(self, offset: int, encoding: Encoding = "utf-16") -> types.Position:
        offset = max(0, min(offset, len(self.text)))
        starts = self.line_starts
        low, high = 0, len(starts) - 1
        while low < high:  # last line start <= offset
            middle = (low + high + 1) // 2
            if starts[middle] <= offset:
                low = middle
            else:
                high = middle - 1
        start, end = self._line_span(low)
        return types.Position(line=low, character=index_to_column(self.text[start:end], min(offset, end) - start, encoding))

    def apply_change(self, change: types.TextDocumentContentChangeEvent, encoding: Encoding = "utf-16") -> None:
        if isinstance(change, types.TextDocumentContentChangePartial):
            start = self.offset_at(change.range.start, encoding)
            end = max(start, self.offset_at(change.range.end, encoding))
            self.text = self.text[:start] + change.text + self.text[end:]
        else:
            self.text = change.text
        self._line_starts = None


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
        for change in params.content_changes:
            document.apply_change(change, encoding)
        document.version = params.text_document.version
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
