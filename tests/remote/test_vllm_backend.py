"""The remote engine against a real vLLM serving the bundled ``tiny`` model.

Runs only when ``SANTACODER_VLLM_URL`` gives the server's URL (``.ci/run`` starts one; the
command is in the README). The server must serve ``model_runtime/bundled/tiny`` as ``tiny``
in float32 with ``--enable-prompt-tokens-details``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from model_runtime.api import (
    CompletionRequest,
    CompletionServerError,
    LoadOptions,
    StopReason,
)

URL = os.environ.get("SANTACODER_VLLM_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="set SANTACODER_VLLM_URL to a vLLM serving the bundled tiny model")
REPO = Path(__file__).resolve().parents[2]


def held_out() -> list[str]:
    """Texts of held-out standard-library files (the tiny model never trained on them)."""
    from training.corpus import load_heldout_documents

    return [document.text for document in load_heldout_documents() if 8_000 < len(document.text) < 60_000][:4]


@pytest.fixture(scope="module")
def remote():
    from model_runtime.openai_engine import load_openai_engine

    engine = load_openai_engine(LoadOptions(model="tiny", backend="openai", server_url=URL, request_timeout_ms=60_000))
    assert engine.describe()["health"] == "ok", engine.describe()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def local():
    from model_runtime import load_engine

    engine = load_engine(LoadOptions(model="tiny", device="cpu"))
    yield engine
    engine.close()


def metric(name: str) -> float:
    """The sum of a counter or gauge over its labels, from the server's /metrics."""
    text = urllib.request.urlopen(URL.rstrip("/") + "/metrics", timeout=10).read().decode()
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)]
    assert values, f"{name} is not in /metrics"
    return sum(values)


def cursor_requests(count: int, **overrides) -> list[CompletionRequest]:
    """FIM requests at line ends of held-out standard-library files."""
    requests = []
    for text in held_out():
        lines = text.splitlines(keepends=True)
        for index in range(40, len(lines), max(1, len(lines) // 3)):
            offset = sum(len(line) for line in lines[:index]) - 1
            cut = offset - 12  # inside the line: the model completes its end
            requests.append(CompletionRequest(prefix=text[max(0, cut - 900) : cut], suffix=text[cut : cut + 300], max_new_tokens=24, **overrides))
    return requests[:count]


@pytest.mark.parametrize("healing", [False, True])
def test_greedy_completions_equal_the_in_process_engines(remote, local, healing):
    """Same prompt token ids; the same greedy text, or a near-tie explains the difference."""
    differences = []
    assert remote.info.context_tokens == local.info.context_tokens
    for request in cursor_requests(8, token_healing=healing):
        ours, theirs = remote.prompts.build(request, "spm"), local.prompts.build(request, "spm")
        assert (ours.token_ids, ours.healed, ours.max_new_tokens) == (theirs.token_ids, theirs.healed, theirs.max_new_tokens)
        here, there = local.complete(request), remote.complete(request)
        if (here.text, here.stop_reason) != (there.text, there.stop_reason):
            differences.append((request, here, there))
    for request, here, there in differences:
        margin = _first_divergence_margin(local, request, here.text, there.text)
        assert margin < 1e-3, f"greedy texts differ without a near-tie (logit margin {margin}): {here.text!r} vs {there.text!r}"
    assert len(differences) <= 2, [(h.text, t.text) for _, h, t in differences]


def _first_divergence_margin(local, request, ours: str, theirs: str) -> float:
    """How far apart the two engines' picks were, in the in-process logits, where the texts part."""
    import torch

    common = os.path.commonprefix([ours, theirs])
    extended = CompletionRequest(prefix=request.prefix + common, suffix=request.suffix, token_healing=False)
    prompt = local.prompts.build(extended, "spm")
    with torch.no_grad():
        logits = local.model(torch.tensor([prompt.token_ids])).logits[0, -1, : local.table.size]
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def test_a_stop_rule_cuts_the_stream_and_the_server_stops_decoding(remote):
    before = metric("vllm:generation_tokens_total")
    request = CompletionRequest(prefix="def f(x):\n", max_new_tokens=200, ignore_eos=True, token_healing=False)
    calls = []

    def stop(text: str):
        calls.append(text)
        return len(text) if len(calls) >= 5 else None

    result = remote.complete(request, stop=stop)
    assert result.stop_reason == StopReason.CALLBACK and result.stats.generated_tokens == 5
    time.sleep(1.0)
    assert metric("vllm:generation_tokens_total") - before < 100, "the server went on decoding after the client left"
    assert metric("vllm:num_requests_running") == 0


def test_supersede_mid_stream_aborts_the_sequence(remote):
    before = metric("vllm:generation_tokens_total")
    cancel = threading.Event()
    request = CompletionRequest(prefix="class A:\n", max_new_tokens=300, ignore_eos=True, token_healing=False)
    seen = []

    def stop(text: str):
        seen.append(text)
        if len(seen) == 3:
            cancel.set()  # a newer keystroke, as LatestWins does it
        return None

    started = time.monotonic()
    result = remote.complete(request, stop=stop, cancel=cancel)
    assert result.stop_reason == StopReason.CANCELLED and time.monotonic() - started < 5
    time.sleep(1.0)
    assert metric("vllm:generation_tokens_total") - before < 150
    assert metric("vllm:num_requests_running") == 0


def test_prefix_cache_hits_while_typing(remote):
    text = held_out()[0]
    start = text.index("def ", 3000)
    begin = start - 1000
    while remote.count_tokens(text[begin:start]) < 440:  # three whole 128-token blocks and more
        begin -= 100
    hits_before = metric("vllm:prefix_cache_hits_total")
    reused = []
    for typed in range(1, 9):  # type eight characters at the end of the prefix
        prefix = text[begin : start + typed]
        result = remote.complete(CompletionRequest(prefix=prefix, max_new_tokens=4, token_healing=False))
        assert result.stats.prompt_tokens > 3 * 128
        reused.append(result.stats.reused_tokens)
    assert all(count >= 256 for count in reused[1:]), reused  # whole 128-token blocks come from the cache
    assert metric("vllm:prefix_cache_hits_total") - hits_before >= 256 * 7


def test_a_server_that_stops_mid_stream(remote):
    """A proxy in front of the real server dies after the first bytes of a streamed answer."""
    from model_runtime.openai_engine import load_openai_engine

    with _DyingProxy(URL, die_after_bytes=600) as proxy:
        engine = load_openai_engine(LoadOptions(model="tiny", backend="openai", server_url=proxy.url, request_timeout_ms=30_000))
        try:
            with pytest.raises(CompletionServerError, match="stream from .* (ended|broke off)"):
                engine.complete(CompletionRequest(prefix="def f(x):\n", max_new_tokens=200, ignore_eos=True, token_healing=False))
            proxy.close_listener()  # the server is gone for good: connection refused, then backoff
            with pytest.raises(CompletionServerError, match="connection refused"):
                engine.complete(CompletionRequest(prefix="x = ", token_healing=False))
            assert engine.describe()["health"] == "unreachable"
        finally:
            engine.close()
    assert remote.complete(CompletionRequest(prefix="x = ", max_new_tokens=2, token_healing=False)).stop_reason is not None


def test_the_headless_command_gives_the_same_suggestion_both_ways(tmp_path):
    source = held_out()[1]
    number, line = next((n, line) for n, line in enumerate(source.splitlines()) if n >= 60 and len(line.strip()) > 20)
    path = tmp_path / "held_out.py"
    path.write_text(source, encoding="utf-8")
    outputs = []
    for extra in ([], ["--backend", "openai", "--server-url", URL]):
        run = subprocess.run(
            [sys.executable, "-m", "lsp_server", "complete", str(path), "--line", str(number), "--character", str(len(line) * 2 // 3),
             "--model", "tiny", "--json", *extra],
            capture_output=True, text=True, timeout=300, cwd=REPO,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        outputs.append(json.loads(run.stdout))
    assert [out["model"]["backend"] for out in outputs] == ["inprocess", "openai"]
    assert outputs[0]["text"] == outputs[1]["text"] and outputs[0]["stats"]["prompt_tokens"] == outputs[1]["stats"]["prompt_tokens"]


class _DyingProxy:
    """Forwards one TCP connection at a time to the server; drops both sides once
    ``die_after_bytes`` of a streamed answer went through (a server that stopped)."""

    def __init__(self, target: str, die_after_bytes: int):
        host, port = target.split("//", 1)[1].rstrip("/").split(":")
        self.target = (host, int(port))
        self.die_after = die_after_bytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close_listener()

    def close_listener(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        except OSError:
            pass
        self.listener.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        streaming = threading.Event()

        def forward_requests() -> None:
            try:
                while data := client.recv(65536):
                    if b"/v1/completions" in data:
                        streaming.set()
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=forward_requests, daemon=True).start()
        streamed = 0
        try:
            while data := upstream.recv(256):
                client.sendall(data)
                if streaming.is_set():
                    streamed += len(data)
                    if streamed >= self.die_after:
                        break
        except OSError:
            pass
        for sock in (client, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
