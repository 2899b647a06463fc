"""Latest wins: a newer request or an edit cancels the running decode; $/cancelRequest works;
a result for an old document version is never returned."""

import asyncio
import time

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from tests.protocol.harness import change_document, fake_model, inline, inline_params, lsp_session, open_document, stats

LONG = " ".join(f"word{i}" for i in range(40))  # 79 tokens at 25 ms: about two seconds
RULES = [{"after": "slow = ", "text": LONG}, {"after": "quick = ", "text": "1"}]
SLOW_MODEL = fake_model(rules=RULES, tokenDelayMs=25)
TEXT = "slow = \nquick = \n"


async def test_a_newer_request_for_the_document_cancels_the_older_one():
    async with lsp_session({"model": SLOW_MODEL, "maxNewTokensSingleLine": 200}) as client:
        open_document(client, "file:///w/a.py", TEXT)
        started = time.perf_counter()
        older = asyncio.ensure_future(inline(client, "file:///w/a.py", 0, 7))
        await asyncio.sleep(0.3)
        newer = await inline(client, "file:///w/a.py", 1, 8)
        assert await older == []
        assert time.perf_counter() - started < 1.5  # the older decode stopped early
        assert [item.insert_text for item in newer] == ["1"]
        assert (await stats(client))["cancelled"] == 1


async def test_cancel_request_stops_the_decode():
    async with lsp_session({"model": SLOW_MODEL, "maxNewTokensSingleLine": 200}) as client:
        open_document(client, "file:///w/a.py", TEXT)
        request = asyncio.ensure_future(  # pytest-lsp's send_request_async sends only once scheduled
            client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params("file:///w/a.py", 0, 7), msg_id="inline-1"
            )
        )
        await asyncio.sleep(0.3)
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="inline-1"))
        with pytest.raises(JsonRpcRequestCancelled):
            await request
        started = time.perf_counter()
        open_document(client, "file:///w/b.py", "quick = \n")
        assert [item.insert_text for item in await inline(client, "file:///w/b.py", 0, 8)] == ["1"]
        assert time.perf_counter() - started < 1.0  # the engine was free: the decode had stopped
        assert (await stats(client))["cancelled"] == 1


async def test_a_result_for_an_old_document_version_is_never_returned():
    async with lsp_session({"model": SLOW_MODEL, "maxNewTokensSingleLine": 200}) as client:
        open_document(client, "file:///w/a.py", TEXT)
        older = asyncio.ensure_future(inline(client, "file:///w/a.py", 0, 7))
        await asyncio.sleep(0.3)
        change_document(client, "file:///w/a.py", 2, (1, 8), (1, 8), "2")
        assert await older == []
        current = await stats(client)
        assert current["shown"] == 0 and current["cancelled"] + current["stale"] == 1
