"""Positions in UTF-16 (and UTF-8/32) units, LSP line ends only, incremental changes."""

from __future__ import annotations

import pytest
from lsprotocol import types

from lsp_server.documents import Document, DocumentStore


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


@pytest.mark.parametrize(
    "encoding, character",
    [("utf-16", 8), ("utf-8", 12), ("utf-32", 7)],  # after 'x = "😀中' : 😀 is 2/4/1 units, 中 1/3/1
)
def test_offsets_of_non_ascii_text_in_each_encoding(encoding, character):
    doc = Document("file:///a.py", 'first\nx = "😀中|"\n'.replace("|", ""))
    offset = doc.offset_at(pos(1, character), encoding)
    assert doc.text[offset:] == '"\n'
    assert doc.position_at(offset, encoding) == pos(1, character)


def test_crlf_lines_and_positions_past_the_end_of_a_line():
    doc = Document("file:///a.py", "ab\r\ncd\r\n")
    assert doc.offset_at(pos(1, 0)) == 4
    assert doc.offset_at(pos(1, 99)) == 6  # end of the line, before its \r\n
    assert doc.offset_at(pos(9, 0)) == len(doc.text)
    assert doc.eol == "\r\n"


def test_only_lsp_line_breaks_count():
    # a form feed and U+2028 are not line ends in LSP (str.splitlines would split at both)
    doc = Document("file:///a.py", "a\x0cb\u2028c\nsecond")
    assert doc.offset_at(pos(1, 0)) == doc.text.index("second")
    assert doc.position_at(doc.text.index("c")) == pos(0, 4)


def test_a_column_inside_a_surrogate_pair_moves_past_it():
    doc = Document("file:///a.py", "😀x")
    assert doc.offset_at(pos(0, 1)) == 1


def test_incremental_changes_with_utf16_ranges():
    store = DocumentStore()
    store.open(types.TextDocumentItem(uri="file:///a.py", language_id="python", version=1, text="s = '😀'\nt = 1\n"))
    change = types.TextDocumentContentChangePartial(range=types.Range(start=pos(0, 8), end=pos(1, 0)), text=" + 'é'\n")
    params = types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri="file:///a.py", version=2), content_changes=[change]
    )
    doc = store.change(params, "utf-16")
    assert doc.text == "s = '😀' + 'é'\nt = 1\n"
    assert store.version("file:///a.py") == 2
    full = types.TextDocumentContentChangeWholeDocument(text="new")
    store.change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri="file:///a.py", version=3), content_changes=[full]
        ),
        "utf-16",
    )
    assert store.get("file:///a.py").text == "new"
