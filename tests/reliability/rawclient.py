"""A raw JSON-RPC client for the server's stdio (or a TCP socket), for the reliability tests.

pytest-lsp's client validates and types everything it sends, so it cannot send garbage; this
one writes whatever bytes a test gives it. A reader thread parses ``Content-Length`` frames
from the server into a list of plain dicts; another thread keeps the server's stderr, so
tests can check what the log said about each bad message.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

from tests.protocol.harness import REPO, fake_model, server_env

TIMEOUT_S = 10.0


def frame(body: bytes | str) -> bytes:
    """``body`` with the ``Content-Length`` header in front."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return b"Content-Length: %d\r\n\r\n" % len(data) + data


class RawConnection:
    """One JSON-RPC connection over a pair of byte streams. Messages from the server are kept
    in ``messages`` (in arrival order) and guarded by ``_changed``."""

    def __init__(self, incoming: BinaryIO, outgoing: BinaryIO, on_close: Callable[[], None] | None = None):
        self._incoming = incoming
        self._outgoing = outgoing
        self._on_close = on_close
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self.messages: list[dict[str, Any]] = []
        self.sent_ids: list[Any] = []  # ids of the requests sent, in order
        self.unparsable: list[bytes] = []
        self.closed = False  # the server closed its end
        threading.Thread(target=self._read, name="rawclient-reader", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                length = None
                while True:
                    line = self._incoming.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length is None:
                    continue
                body = self._incoming.read(length)
                try:
                    message = json.loads(body)
                except ValueError:
                    self.unparsable.append(body)
                    continue
                with self._changed:
                    self.messages.append(message)
                    self._changed.notify_all()
        except (OSError, ValueError):
            return
        finally:
            with self._changed:
                self.closed = True
                self._changed.notify_all()

    # -- sending --------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self._outgoing.write(data)
        self._outgoing.flush()

    def send(self, message: Any) -> None:
        self.send_bytes(frame(json.dumps(message)))

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def send_request(self, method: str, params: Any = None) -> int:
        """Send a request without waiting; returns its id."""
        msg_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.sent_ids.append(msg_id)
        self.send(message)
        return msg_id

    def request(self, method: str, params: Any = None, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
        """Send a request and wait for its response (the whole message: ``result`` or ``error``)."""
        return self.response(self.send_request(method, params), timeout_s)

    def close(self) -> None:
        """Close our end for writing: the server sees the end of its input."""
        try:
            self._outgoing.close()
            if self._on_close is not None:
                self._on_close()
        except OSError:
            pass

    # -- receiving ------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
        """The first message (old or new) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((message for message in self.messages if predicate(message)), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise AssertionError(f"no such message from the server within {timeout_s} s (closed: {self.closed})")
                self._changed.wait(remaining)

    def response(self, msg_id: Any, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
        return self.wait_for(lambda m: m.get("id") == msg_id and "method" not in m, timeout_s)

    def responses(self, msg_id: Any) -> list[dict[str, Any]]:
        with self._changed:
            return [m for m in self.messages if m.get("id") == msg_id and "method" not in m]

    def unanswered(self, timeout_s: float = TIMEOUT_S) -> list[Any]:
        """Ids of sent requests that have no response after waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                answered = {m.get("id") for m in self.messages if "method" not in m}
                missing = [msg_id for msg_id in self.sent_ids if msg_id not in answered]
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0 or self.closed:
                    return missing
                self._changed.wait(remaining)

    def discard_messages(self) -> None:
        """Forget every message received so far (long runs: ``wait_for`` scans them all)."""
        with self._changed:
            self.messages.clear()

    def notifications(self, method: str) -> list[dict[str, Any]]:
        with self._changed:
            return [m for m in self.messages if m.get("method") == method and "id" not in m]

    # -- LSP conveniences -----------------------------------------------------------------

    def initialize(self, options: dict[str, Any] | None = None, *, wait_ready: bool = True, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
        """``initialize`` + ``initialized``; ``options`` are the initializationOptions
        (the fake engine and no debounce unless given)."""
        options = {"debounceMs": 0, "model": fake_model(), **(options or {})}
        capabilities = {"textDocument": {"inlineCompletion": {}, "completion": {}}, "window": {"workDoneProgress": False}}
        params = {"processId": None, "rootUri": REPO.as_uri(), "capabilities": capabilities, "initializationOptions": options}
        answer = self.request("initialize", params, timeout_s)
        assert "result" in answer, answer
        self.notify("initialized", {})
        if wait_ready:
            self.wait_for_model()
        return answer["result"]

    def stats(self) -> dict[str, Any]:
        answer = self.request("santacoder/stats")
        assert "result" in answer, answer
        return answer["result"]

    def wait_for_model(self, states: tuple[str, ...] = ("ready",), timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.stats()
            if current["model"]["state"] in states:
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"model never reached {states}: {current['model']}")
            time.sleep(0.02)

    def open(self, uri: str, text: str, *, version: int = 1, language: str = "python") -> None:
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language, "version": version, "text": text}})

    def inline(self, uri: str, line: Any, character: Any) -> dict[str, Any]:
        """The whole response to an inline-completion request at (line, character)."""
        params = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "context": {"triggerKind": 2}}
        return self.request("textDocument/inlineCompletion", params)


class ServerProcess:
    """``python -m lsp_server`` as a subprocess, with the fake engine allowed and stderr kept."""

    def __init__(
        self, *args: str, log_level: str = "INFO", env: dict[str, str] | None = None, stdio: bool = True, read: bool = True,
        cwd: Path = REPO,
    ):  # fmt: skip
        """``stdio=False`` for TCP mode (no pipes but stderr); ``read=False`` leaves the
        server's stdout to the test (no connection, no reader thread). ``cwd``: the checkout
        whose ``lsp_server`` runs (``python -m`` imports from there first)."""
        command = [sys.executable, "-m", "lsp_server", "--log-level", log_level, *args]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if stdio else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdio else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env or server_env(),
            cwd=cwd,
        )
        self._stderr: list[str] = []
        self._stderr_changed = threading.Condition()
        threading.Thread(target=self._keep_stderr, name="rawclient-stderr", daemon=True).start()
        self.connection = RawConnection(self.process.stdout, self.process.stdin) if stdio and read else None

    def _keep_stderr(self) -> None:
        for line in iter(self.process.stderr.readline, b""):
            with self._stderr_changed:
                self._stderr.append(line.decode("utf-8", "replace"))
                self._stderr_changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._stderr_changed:
            return "".join(self._stderr)

    def wait_for_log(self, text: str, timeout_s: float = TIMEOUT_S, *, after: int = 0) -> str:
        """The first stderr line from character ``after`` on that contains ``text``."""
        deadline = time.monotonic() + timeout_s
        with self._stderr_changed:
            while True:
                tail = "".join(self._stderr)[after:]
                line = next((line for line in tail.splitlines() if text in line), None)
                if line is not None:
                    return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no log line with {text!r} within {timeout_s} s; the log after {after}:\n{tail}")
                self._stderr_changed.wait(remaining)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout_s: float = TIMEOUT_S) -> int:
        """The exit code; fails if the server is still running after ``timeout_s``."""
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit within {timeout_s} s; its log:\n{self.stderr}") from None

    def stop(self) -> None:
        """Kill the server if a test left it running, and release the pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A port nobody listens on now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect_tcp(port: int, timeout_s: float = TIMEOUT_S, host: str = "127.0.0.1") -> tuple[socket.socket, RawConnection]:
    """Connect to a TCP server that may still be starting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    sock.settimeout(None)
    # the file objects keep the socket open after sock.close(): end our side explicitly
    return sock, RawConnection(sock.makefile("rb"), sock.makefile("wb"), on_close=lambda: sock.shutdown(socket.SHUT_WR))


def tcp_listeners(port: int) -> list[str]:
    """Local addresses (``ip:port``) in LISTEN state on ``port``, from /proc/net/tcp and tcp6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table, encoding="ascii") as handle:
            next(handle)
            for row in handle:
                fields = row.split()
                address, state = fields[1], fields[3]
                hex_ip, hex_port = address.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: TCP_LISTEN
                    found.append(f"{_proc_ip(hex_ip)}:{port}")
    return found


def _proc_ip(hex_ip: str) -> str:
    """/proc/net/tcp writes addresses as native-endian 32-bit words (little-endian here)."""
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return socket.inet_ntop(socket.AF_INET, words)
    return socket.inet_ntop(socket.AF_INET6, words)
