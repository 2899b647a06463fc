"""Extra context: a chunk of another open document reaches the request, byte-identical while
the user types; the setting turns it off; another language gets none."""

from __future__ import annotations

import json
from pathlib import Path

from tests.protocol.harness import change_document, fake_model, inline, lsp_session, open_document, stats

HELPERS = "".join(
    f"def scale_reading_{i}(reading, factor):\n    adjusted = reading * factor\n    clipped = min(adjusted, 100)\n    return clipped\n\n"
    for i in range(4)
)
MAIN = "import helpers\n\n\ndef report(values):\n    total = scale_reading_1(0, 1)\n    for value in values:\n        total += \n    return total\n"
CURSOR = (6, 17)  # after "total += "


def requests(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def type_in_main(client, typed: str) -> None:
    line, character = CURSOR
    for version, char in enumerate(typed, start=2):
        change_document(client, "file:///w/main.py", version, (line, character), (line, character), char)
        character += 1
        await inline(client, "file:///w/main.py", line, character)


async def test_a_chunk_of_another_open_document_reaches_extra_context_unchanged_while_typing(tmp_path):
    record = tmp_path / "requests.jsonl"
    async with lsp_session({"model": fake_model(recordPath=str(record))}) as client:
        open_document(client, "file:///w/helpers.py", HELPERS)
        open_document(client, "file:///w/main.py", MAIN)
        await inline(client, "file:///w/main.py", *CURSOR)
        await type_in_main(client, "scale_reading_1(value, total) + scale_read")  # names the window has, or half names
        caches = (await stats(client))["caches"]
    seen = [r for r in requests(record) if r["cacheKey"] == "file:///w/main.py"]
    assert len(seen) >= 40  # one model call a keystroke: the fake suggests nothing, so no cache answers
    first = seen[0]["extraContext"]
    assert first.startswith("# helpers.py\ndef scale_reading_")
    assert "def scale_reading_1(reading, factor):\n    adjusted = reading * factor\n" in first
    assert all(r["extraContext"] == first for r in seen)  # byte-identical: its KV stays reusable
    assert seen[-1]["prefix"].endswith("total += scale_reading_1(value, total) + scale_read")
    assert caches["contextChunks"] >= 2 and caches["contextDocuments"] == 2


async def test_a_closed_document_still_feeds_the_context(tmp_path):
    record = tmp_path / "requests.jsonl"
    async with lsp_session({"model": fake_model(recordPath=str(record))}) as client:
        open_document(client, "file:///w/helpers.py", HELPERS)
        client.text_document_did_close(_close("file:///w/helpers.py"))
        open_document(client, "file:///w/main.py", MAIN.replace("total += ", "total += scale_reading_1("))
        await inline(client, "file:///w/main.py", 6, 33)
    [request] = requests(record)
    assert "def scale_reading_1(reading, factor):" in request["extraContext"]


async def test_extra_context_tokens_zero_turns_it_off_and_other_languages_get_none(tmp_path):
    record = tmp_path / "requests.jsonl"
    async with lsp_session({"model": fake_model(recordPath=str(record)), "extraContextTokens": 0}) as client:
        open_document(client, "file:///w/helpers.py", HELPERS)
        open_document(client, "file:///w/main.py", MAIN)
        await inline(client, "file:///w/main.py", *CURSOR)
    [request] = requests(record)
    assert request["extraContext"] == ""

    record.unlink()
    async with lsp_session({"model": fake_model(recordPath=str(record))}) as client:
        open_document(client, "file:///w/helpers.js", HELPERS.replace("def ", "function "), language="javascript")
        open_document(client, "file:///w/main.py", MAIN)
        await inline(client, "file:///w/main.py", *CURSOR)
    [request] = requests(record)
    assert request["extraContext"] == ""


def _close(uri: str):
    from lsprotocol import types

    return types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))


async def test_a_workspace_file_the_document_imports_feeds_the_context(tmp_path):
    """The harness's workspace is this repository: a new, unsaved module beside lsp_server's
    modules imports one of them, which no editor opened."""
    import asyncio

    from tests.protocol.harness import REPO

    record = tmp_path / "requests.jsonl"
    uri = (REPO / "lsp_server" / "not_saved_yet.py").as_uri()
    text = "from .context_chunks import split_chunks\n\n\ndef count(text):\n    return len(split_chunks(text))\n\npieces = split_chunks(\n"
    async with lsp_session({"model": fake_model(recordPath=str(record))}) as client:
        open_document(client, uri, text)
        for _ in range(200):  # the import is read in a worker thread
            if (await stats(client))["caches"]["contextDocuments"] >= 2:
                break
            await asyncio.sleep(0.05)
        await inline(client, uri, 6, 22)
    [request] = requests(record)
    assert "# lsp_server/context_chunks.py\n" in request["extraContext"]
    assert "def split_chunks(text: str)" in request["extraContext"]
