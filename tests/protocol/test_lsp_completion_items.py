"""textDocument/completion: the same suggestion as one item, for clients without inline
completion (Neovim 0.11); clients with inline completion get no duplicate popup item."""

from lsprotocol import types

from tests.protocol.harness import fake_model, inline, lsp_session, open_document, stats

RULES = [{"after": "def add(a, b):\n    ", "text": "return a + b\n"}]
TEXT = "def add(a, b):\n    \n"


def completion_params(uri: str, line: int, character: int) -> types.CompletionParams:
    return types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character))


async def test_clients_without_inline_completion_get_one_completion_item():
    async with lsp_session({"model": fake_model(rules=RULES)}, inline=False) as client:
        open_document(client, "file:///w/a.py", TEXT)
        result = await client.text_document_completion_async(completion_params("file:///w/a.py", 1, 4))
        [item] = result.items
        assert result.is_incomplete
        assert item.label == "return a + b"
        cursor = types.Position(line=1, character=4)
        assert item.text_edit == types.TextEdit(range=types.Range(start=cursor, end=cursor), new_text="return a + b")
        assert item.command.command == "santacoder.accepted"
        # the inline request gives the same text from the cache
        [inline_item] = await inline(client, "file:///w/a.py", 1, 4)
        assert inline_item.insert_text == item.text_edit.new_text
        assert (await stats(client))["modelCalls"] == 1


async def test_clients_with_inline_completion_get_no_popup_duplicate():
    async with lsp_session({"model": fake_model(rules=RULES)}) as client:
        open_document(client, "file:///w/a.py", TEXT)
        result = await client.text_document_completion_async(completion_params("file:///w/a.py", 1, 4))
        assert list(result.items) == []
        assert (await stats(client))["modelCalls"] == 0
