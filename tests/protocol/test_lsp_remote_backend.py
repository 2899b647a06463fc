"""backend "openai": the real server, with the bundled tokenizer, against a tiny local
OpenAI-compatible server. Suggestions come from the stream; a missing server gives empty
answers, one clear message and an "unreachable" health in santacoder/stats, and the LSP
server stays up and recovers when the model server comes."""

from __future__ import annotations

import asyncio
import socket

from tests.fake_openai import FakeOpenAIServer
from tests.protocol.harness import (
    inline,
    lsp_session,
    open_document,
    server_env,
    stats,
    wait_for_model,
)


def text_stream(pieces: list[str]):
    """A server that sends text pieces only (no token ids), as servers without vLLM's
    ``return_tokens_as_token_ids`` do. Its text starts with what token healing backed off
    (here the space after ``=``), as a model's does."""

    def respond(exchange) -> None:
        exchange.start_stream()
        for piece in pieces:
            if not exchange.event({"choices": [{"index": 0, "text": piece, "finish_reason": None}]}):
                return
        exchange.event({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
        exchange.event("[DONE]")
        exchange.end()

    return respond


def remote_options(url: str, **more) -> dict:
    return {"model": "tiny", "backend": "openai", "serverUrl": url, "requestTimeoutMs": 5000, **more}


async def test_suggestions_come_from_the_stream_and_stats_show_the_backend():
    env = dict(server_env(), SANTACODER_TEST_KEY="sk-not-to-be-shown")
    with FakeOpenAIServer(text_stream([" compute", "(value)", "\n", "print(x)"])) as model_server:
        async with lsp_session(remote_options(model_server.url, apiKeyEnv="SANTACODER_TEST_KEY"), env=env, wait_ready=False) as client:
            await wait_for_model(client, timeout_s=120)
            open_document(client, "file:///w/a.py", "import os\nresult = \n")
            [item] = await inline(client, "file:///w/a.py", 1, 9)
            assert item.insert_text == "compute(value)"  # single-line mode: cut at the line break
            model = (await stats(client))["model"]
            assert (model["backend"], model["url"], model["health"], model["serverModel"]) == ("openai", model_server.url, "ok", "tiny")
            assert "sk-not-to-be-shown" not in str(await stats(client))
        [request] = model_server.completions()
        assert request.headers["authorization"] == "Bearer sk-not-to-be-shown"
        assert isinstance(request.body["prompt"], list) and all(isinstance(i, int) for i in request.body["prompt"])


async def test_a_missing_model_server_gives_empty_answers_and_the_server_recovers():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with lsp_session(remote_options(url), wait_ready=False) as client:
        current = await wait_for_model(client, timeout_s=120)
        assert current["model"]["state"] == "ready"  # the tokenizer loaded; the server comes later
        open_document(client, "file:///w/a.py", "result = \n")
        assert await inline(client, "file:///w/a.py", 0, 9) == []
        model = (await stats(client))["model"]
        assert model["health"] == "unreachable" and "start the model server" in model["lastError"]
        with FakeOpenAIServer(text_stream(["42"]), port=port):
            for _ in range(100):  # the engine backs off for up to a few seconds
                items = await inline(client, "file:///w/a.py", 0, 9)
                if items:
                    break
                await asyncio.sleep(0.1)
            assert [item.insert_text for item in items] == ["42"]
            assert (await stats(client))["model"]["health"] == "ok"
