"""textDocument/inlineCompletion: items carry the continuation and an empty range at the
cursor, in UTF-16 units, for ASCII, emoji, CJK and CRLF lines, after incremental edits."""

from lsprotocol import types

from tests.protocol.harness import change_document, fake_model, inline, lsp_session, open_document

RULES = [
    {"after": "result = ", "text": "compute(value)"},
    {"after": 'label = "😀 中文 ', "before": '"', "text": 'héllo"'},  # the suffix must start exactly at the cursor
    {"after": "def area(r):\n    ", "text": "return 3.14 * r * r\n"},
    {"after": "x = 1\n\x0cy = ", "text": "2"},
    {"after": "total = ", "text": "sum(items)"},
]


def cursor_range(line: int, character: int) -> types.Range:
    position = types.Position(line=line, character=character)
    return types.Range(start=position, end=position)


async def test_items_and_ranges_for_ascii_emoji_cjk_crlf_and_form_feeds():
    async with lsp_session({"model": fake_model(rules=RULES)}) as client:
        open_document(client, "file:///w/a.py", "import os\nresult = \n")
        [item] = await inline(client, "file:///w/a.py", 1, 9)
        assert item.insert_text == "compute(value)"
        assert item.range == cursor_range(1, 9)
        assert item.command.command == "santacoder.accepted"

        # 😀 is two UTF-16 code units: the cursor before the closing quote is at character 15, not 14
        open_document(client, "file:///w/b.py", 'label = "😀 中文 "\n')
        [item] = await inline(client, "file:///w/b.py", 0, 15)
        assert item.insert_text == "héllo"  # the duplicated closing quote is dropped
        assert item.range == cursor_range(0, 15)

        open_document(client, "file:///w/c.py", "def area(r):\r\n    \r\n")
        [item] = await inline(client, "file:///w/c.py", 1, 4)
        assert item.insert_text == "return 3.14 * r * r"
        assert item.range == cursor_range(1, 4)

        # a form feed is not a line break in LSP: "y = " is on line 1
        open_document(client, "file:///w/d.py", "x = 1\n\x0cy = \n")
        [item] = await inline(client, "file:///w/d.py", 1, 5)
        assert item.insert_text == "2"


async def test_incremental_edits_are_applied_before_completing():
    async with lsp_session({"model": fake_model(rules=RULES)}) as client:
        open_document(client, "file:///w/e.py", "s = '😀'\nx = 0\n")
        change_document(client, "file:///w/e.py", 2, (1, 0), (1, 5), "total = ")
        change_document(client, "file:///w/e.py", 3, (0, 8), (0, 8), " + 'é'")
        [item] = await inline(client, "file:///w/e.py", 1, 8)
        assert item.insert_text == "sum(items)"
        assert item.range == cursor_range(1, 8)


async def test_disabled_languages_and_unknown_documents_get_no_items():
    async with lsp_session({"model": fake_model(rules=RULES), "enable": {"*": True, "markdown": False}}) as client:
        open_document(client, "file:///w/notes.md", "result = \n", language="markdown")
        assert await inline(client, "file:///w/notes.md", 0, 9) == []
        assert await inline(client, "file:///w/never-opened.py", 0, 0) == []
