"""A tiny scriptable HTTP server on 127.0.0.1 that plays an OpenAI-compatible model server,
for the remote engine's tests: healthy streams, garbage, error statuses, cut streams, slowness.

``FakeOpenAIServer(respond)`` serves ``/v1/models`` itself (``models``) and hands every other
request to ``respond(exchange)``, which writes what the test wants with the helpers of
``Exchange``. Every request is recorded (``requests``); ``disconnects`` counts streams whose
client went away before the server finished writing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Exchange:
    handler: BaseHTTPRequestHandler
    request: Recorded
    server: "FakeOpenAIServer"
    _chunked: bool = field(default=False)

    def status(self, code: int, body: bytes | str | dict = b"", content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
        self.handler.send_response(code)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.end_headers()
        self.handler.wfile.write(data)
        self.handler.wfile.flush()

    def start_stream(self) -> None:
        self.handler.send_response(200)
        self.handler.send_header("Content-Type", "text/event-stream")
        self.handler.send_header("Transfer-Encoding", "chunked")
        self.handler.end_headers()
        self._chunked = True

    def write(self, data: bytes) -> bool:
        """One chunk; ``False`` once the client has gone away."""
        try:
            self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.handler.wfile.flush()
            return True
        except OSError:
            self.server.note_disconnect()
            return False

    def event(self, payload: dict | str) -> bool:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return self.write(f"data: {text}\n\n".encode())

    def tokens(
        self, ids: list[int], delay_s: float = 0.0, finish: str | None = "stop", cached_tokens: int | None = None, done: bool = True,
        logprobs: list[float] | None = None,
    ) -> bool:  # fmt: skip
        """Stream ``ids`` one per event as vLLM does with ``return_tokens_as_token_ids``
        (with ``logprobs``, each event carries its token's log-probability too)."""
        prompt = self.request.body.get("prompt", []) if isinstance(self.request.body, dict) else []
        usage: dict[str, Any] = {"prompt_tokens": len(prompt), "completion_tokens": 0, "total_tokens": len(prompt)}
        if cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
        for index, token in enumerate(ids):
            if delay_s:
                time.sleep(delay_s)
            last = index == len(ids) - 1
            usage = dict(usage, completion_tokens=index + 1)
            scores: dict[str, Any] = {"tokens": [f"token_id:{token}"]}
            if logprobs is not None:
                scores["token_logprobs"] = [logprobs[index]]
            choice = {"index": 0, "text": "?", "logprobs": scores, "finish_reason": finish if last else None}
            if not self.event({"id": "cmpl-1", "object": "text_completion", "choices": [choice], "usage": usage}):
                return False
        if done:
            return self.event("[DONE]") and self.end()
        return True

    def end(self) -> bool:
        return self.write(b"") if self._chunked else True

    def wait_for_disconnect(self, timeout_s: float = 5.0) -> bool:
        """Write keep-alive comments until the client goes away (``True``) or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.write(b": keep-alive\n\n"):
                return True
            time.sleep(0.01)
        return False

    def drop(self) -> None:
        """Close the connection at once, mid-response (a server that died)."""
        try:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.handler.close_connection = True


DEFAULT_MODELS = [{"id": "tiny", "object": "model", "max_model_len": 512}]


class FakeOpenAIServer:
    """``models=None``: ``/v1/models`` goes to ``respond`` like everything else."""

    def __init__(self, respond: Callable[[Exchange], None], models: list[dict] | None = DEFAULT_MODELS, port: int = 0):
        self.respond = respond
        self.models = models
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_GET(self):
                outer._handle(self, "GET")

            def do_POST(self):
                outer._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def completions(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/v1/completions")]

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        recorded = Recorded(method, handler.path, {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.requests.append(recorded)
        exchange = Exchange(handler, recorded, self)
        if method == "GET" and handler.path.endswith("/v1/models") and self.models is not None:
            exchange.status(200, {"object": "list", "data": self.models})
            return
        self.respond(exchange)
