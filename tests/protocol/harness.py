"""Starts the real server as a subprocess (stdio) and drives it with pytest-lsp's client.

The server runs with the scripted engine of ``tests/fakes.py``: the model setting is
``fake:<json spec>`` and ``SANTACODER_LSP_FAKE_ENGINE`` points at that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, AsyncIterator

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.engine_adapter import FAKE_ENGINE_ENV

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "fakes.py"
STATS = "santacoder/stats"


def fake_model(**spec: Any) -> str:
    """The model setting that selects the scripted engine with this spec (see tests/fakes.py)."""
    return "fake:" + json.dumps(spec)


def capabilities(*, inline: bool = True, progress: bool = True, encodings: list[str] | None = None) -> types.ClientCapabilities:
    """Built by hand: pytest-lsp's captured client snapshots lack inlineCompletion."""
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=encodings) if encodings else None,
        window=types.WindowClientCapabilities(work_done_progress=progress),
        workspace=types.WorkspaceClientCapabilities(configuration=False),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            completion=types.CompletionClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities() if inline else None,
        ),
    )


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env[FAKE_ENGINE_ENV] = str(FAKES)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def server_command() -> list[str]:
    """``LSP_TEST_LOG=DEBUG`` / ``LSP_TEST_LOG_FILE=path`` make the server log more, for debugging."""
    command = [sys.executable, "-m", "lsp_server", "--log-level", os.environ.get("LSP_TEST_LOG", "WARNING")]
    if os.environ.get("LSP_TEST_LOG_FILE"):
        command += ["--log-file", os.environ["LSP_TEST_LOG_FILE"]]
    return command


@contextlib.asynccontextmanager
async def lsp_session(
    options: dict[str, Any] | None = None,
    *,
    inline: bool = True,
    progress: bool = True,
    encodings: list[str] | None = None,
    wait_ready: bool = True,
    env: dict[str, str] | None = None,
) -> AsyncIterator[LanguageClient]:
    """A started, initialized server; ``options`` are the ``initializationOptions``. The
    ``InitializeResult`` is kept as ``client.initialize_result``."""
    options = {"debounceMs": 0, **(options or {})}
    options.setdefault("model", fake_model())
    client = await ClientServerConfig(server_command=server_command(), server_env=env or server_env()).start()
    try:
        client.initialize_result = await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities(inline=inline, progress=progress, encodings=encodings),
                initialization_options=options,
                root_uri=REPO.as_uri(),
            )
        )
        if wait_ready:
            await wait_for_model(client)
        yield client
    finally:
        await _stop(client)


async def _stop(client: LanguageClient) -> None:
    """Shut the server down politely; kill it if it does not go (pygls' stop() would wait forever)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.shutdown_session(), 10)
    process = client._server
    if process is not None and process.returncode is None:
        process.kill()
    await client.stop()


def plain(value: Any) -> Any:
    """pygls hands custom-request results back as namedtuples: turn them into dicts."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


async def stats(client: LanguageClient) -> dict[str, Any]:
    return plain(await client.protocol.send_request_async(STATS, None))


async def wait_for_model(client: LanguageClient, states: tuple[str, ...] = ("ready", "failed"), timeout_s: float = 20) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        current = await stats(client)
        if current["model"]["state"] in states:
            return current
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"model never reached {states}: {current['model']}")
        await asyncio.sleep(0.02)


def open_document(client: LanguageClient, uri: str, text: str, *, language: str = "python", version: int = 1) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text))
    )


def change_document(client: LanguageClient, uri: str, version: int, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
    """An incremental change: replace the range start..end (line, character) with ``text``."""
    change = types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(*start), end=types.Position(*end)), text=text
    )
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version), content_changes=[change]
        )
    )


def inline_params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
    )


async def inline(client: LanguageClient, uri: str, line: int, character: int) -> list[types.InlineCompletionItem]:
    result = await client.text_document_inline_completion_async(inline_params(uri, line, character))
    if result is None:
        return []
    return list(result.items if isinstance(result, types.InlineCompletionList) else result)
