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


# -- chunked storage: the same answers as one plain string ----------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import lsp_server.documents as documents_module  # noqa: E402

_ALPHABET = "ab \t\r\n\n\u2028😀é"


def _reference_line_starts(text: str) -> list[int]:
    import re

    return [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # the fixture is constant
@given(
    text=st.text(alphabet=_ALPHABET, max_size=200),
    edits=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40), st.text(alphabet=_ALPHABET, max_size=30)), max_size=25),
)
def test_chunked_edits_keep_text_lines_and_positions_equal_to_a_plain_string(monkeypatch_chunks, text, edits):
    doc = Document("file:///a.py", text)
    expected = text
    for at, removed, inserted in edits:
        start = min(at, len(expected))
        end = min(len(expected), start + removed)
        doc.replace(start, end, inserted)
        expected = expected[:start] + inserted + expected[end:]
        assert len(doc) == len(expected)
        assert all(len(chunk) > 0 for chunk in doc._chunks) or doc._chunks == [""]
        assert not any(a.endswith("\r") and b.startswith("\n") for a, b in zip(doc._chunks, doc._chunks[1:]))
    assert doc.text == expected
    starts = _reference_line_starts(expected)
    assert doc.line_count == len(starts)
    assert [doc.line_start(line) for line in range(len(starts))] == starts
    for offset in range(len(expected) + 1):
        line = doc.line_of(offset)
        assert starts[line] <= offset and (line + 1 == len(starts) or offset < starts[line + 1])
        for encoding in ("utf-16", "utf-8"):
            assert doc.offset_at(doc.position_at(offset, encoding), encoding) == min(offset, _content_end(expected, starts, line))
    for a in range(0, len(expected) + 1, 7):
        assert doc.slice(a, a + 13) == expected[a : a + 13]


def _content_end(text: str, starts: list[int], line: int) -> int:
    """An offset inside a line break maps to the end of the line's content."""
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    while end > starts[line] and text[end - 1] in "\r\n":
        end -= 1
    return end


def test_an_excerpt_starts_at_a_line_start_and_knows_its_base():
    doc = Document("file:///a.py", "".join(f"line {k}\n" for k in range(10_000)))
    offset = doc.offset_at(pos(5000, 3))
    text, base = doc.excerpt(offset, 1000)
    assert base > 0 and doc.text[base - 1] == "\n"
    assert text == doc.text[base : offset + 1000] and base <= offset - 1000


def test_a_huge_document_edit_touches_only_its_chunks():
    doc = Document("file:///a.py", "x = 1\n" * 2_000_000)  # 12 MB
    chunks = list(doc._chunks)
    middle = doc.offset_at(pos(1_000_000, 4))
    doc.replace(middle, middle, "2")
    changed = [k for k, (a, b) in enumerate(zip(chunks, doc._chunks)) if a is not b]
    assert len(doc._chunks) == len(chunks) and len(changed) == 1
    assert doc.line_text(1_000_000) == "x = 21" and doc.line_text(999_999) == "x = 1"


@pytest.fixture()
def monkeypatch_chunks(monkeypatch):
    """Chunks of 8 characters, so short texts cross many chunk boundaries."""
    monkeypatch.setattr(documents_module, "CHUNK_CHARS", 8)


def test_a_change_whose_version_goes_back_is_applied_with_a_warning(caplog):
    store = DocumentStore()
    uri = "file:///a.py"
    store.open(types.TextDocumentItem(uri=uri, language_id="python", version=5, text="ab"))
    full = types.TextDocumentContentChangeWholeDocument(text="older")
    store.change(types.DidChangeTextDocumentParams(types.VersionedTextDocumentIdentifier(uri=uri, version=3), [full]), "utf-16")
    assert "has version 3, not newer than 5" in caplog.text
    assert (store.get(uri).text, store.version(uri)) == ("older", 3)  # the client's text and version
