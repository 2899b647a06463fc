"""HTTP for the client of an OpenAI-compatible server: JSON requests and server-sent-event
streams over keep-alive connections, any of which another thread can cut at once.

Standard library only (``http.client``), so the client adds no dependency. Every failure
becomes a ``ServerProblem`` whose ``message`` is one line that says what to do; ``kind`` tells
the engine whether to back off (``connect``, ``overloaded``) and how to count it. The API key
lives in ``Endpoint``'s headers only: it is never part of a message, a repr or ``describe()``.

Cutting an exchange (``Cutter.cut``) shuts the socket down for both directions, which wakes a
thread blocked reading it; the server sees the client go away and (vLLM does) aborts the
sequence, so no tokens are computed after a stop rule, a newer keystroke or the deadline.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterator

_ERROR_BODY_BYTES = 4096
_MAX_IDLE_CONNECTIONS = 8
_USER_AGENT = "santacoder-lsp"


class ServerProblem(Exception):
    """One failed exchange with the server. ``kind``: ``connect`` (refused, DNS, TLS, connect
    timeout), ``overloaded`` (HTTP 429 or 503), ``http`` (any other status), ``protocol`` (a
    body that is not what the API promises), ``cut`` (the stream ended before it finished),
    ``timeout`` (connected, but no answer in time), ``aborted`` (we cut it: see ``Cutter``)."""

    def __init__(self, kind: str, message: str, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Endpoint:
    """Where the server is. ``base_path`` is what precedes ``/v1/...`` (usually empty)."""

    scheme: str
    host: str
    port: int
    base_path: str
    api_key: str = field(default="", repr=False, compare=False)
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 30.0  # a safety net only: the engine's watchdog enforces deadlines

    @classmethod
    def parse(cls, url: str, api_key: str = "", connect_timeout_s: float = 2.0, read_timeout_s: float = 30.0) -> "Endpoint":
        """Raises ``ValueError`` with what is wrong. ``.../v1`` is accepted and dropped, as
        OpenAI clients are usually given the URL with it."""
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"serverUrl must be an http:// or https:// URL such as http://127.0.0.1:8000, not {url!r}")
        if parts.username or parts.password:
            raise ValueError("serverUrl must not hold a user name or password: put the key in an environment variable named by apiKeyEnv")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"serverUrl {url!r} has an invalid port") from None
        path = parts.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[: -len("/v1")]
        return cls(parts.scheme, parts.hostname, port, path, api_key, connect_timeout_s, read_timeout_s)

    @property
    def display(self) -> str:
        """The URL without credentials, for logs and ``santacoder/stats``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "User-Agent": _USER_AGENT}
        if self.api_key:
            out["Authorization"] = f"Bearer {self.api_key}"
        return out


class ConnectionPool:
    """Idle keep-alive connections to one endpoint (thread-safe). A connection is handed to one
    caller at a time and comes back only after its response was read to the end."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was reused (a reused one may have been closed by the
        server meanwhile: the caller retries once on a fresh one)."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        e = self.endpoint
        if e.scheme == "https":
            return http.client.HTTPSConnection(e.host, e.port, timeout=e.connect_timeout_s, context=ssl.create_default_context()), False
        return http.client.HTTPConnection(e.host, e.port, timeout=e.connect_timeout_s), False

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class Cutter:
    """Lets another thread cut a call's exchanges at any moment: before a socket exists (the
    next one attached is cut at once), while the server has not answered yet, or mid-stream.
    The reason sticks: every later exchange of the same call is cut too. Between ``finish()``
    and the next ``attach`` no socket is touched, so a connection back in the pool is safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self.reason: str | None = None

    def attach(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            cut = self.reason is not None
        if cut:
            _shut(connection)

    def cut(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            connection = self._connection
        if connection is not None:
            _shut(connection)

    def finish(self) -> bool:
        """The exchange is over (no more cutting its socket); ``True`` if it was never cut."""
        with self._lock:
            self._connection = None
            return self.reason is None


def _shut(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked reader; the server sees us leave
        except OSError:
            pass


class Stream:
    """One streamed response: ``events()`` yields the JSON objects of its ``data:`` lines until
    ``[DONE]``, then puts the connection back in the pool. Raises ``ServerProblem`` (kind
    ``aborted`` after the ``Cutter`` cut it)."""

    def __init__(self, pool: ConnectionPool, connection: http.client.HTTPConnection, response: http.client.HTTPResponse, cutter: Cutter):
        self._pool = pool
        self._connection = connection
        self._response = response
        self._cutter = cutter
        self._finished = False

    def events(self) -> Iterator[dict[str, Any]]:
        where = self._pool.endpoint.display
        data: list[str] = []
        try:
            while True:
                line = self._read_line()
                if self._cutter.reason is not None:
                    raise ServerProblem("aborted", self._cutter.reason)
                if not line:
                    raise ServerProblem("cut", f"the stream from {where} ended before it finished: the server stopped or restarted, see its log")
                text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                if text.startswith("data:"):
                    data.append(text[5:].lstrip(" "))
                    continue
                if text or not data:
                    continue  # comments, "event:"/"id:" fields, keep-alive blank lines
                payload, data = "\n".join(data), []
                if payload == "[DONE]":
                    self._finish(reusable=True)
                    return
                yield _parse_event(payload, where)
        finally:
            self._finish(reusable=False)

    def _read_line(self) -> bytes:
        try:
            return self._response.readline(1 << 20)
        except (OSError, http.client.HTTPException, ValueError):
            # OSError: shut down, reset or timed out; ValueError: the response was closed under us.
            if self._cutter.reason is not None:
                return b""
            raise ServerProblem("cut", f"the stream from {self._pool.endpoint.display} broke off: the server stopped or restarted, see its log") from None

    def _finish(self, reusable: bool) -> None:
        if self._finished:
            return
        self._finished = True
        reusable = self._cutter.finish() and reusable
        if reusable:
            try:
                self._response.read()  # the chunked body's terminator, so the connection is clean
            except (OSError, http.client.HTTPException):
                reusable = False
        if reusable and not self._response.will_close:
            self._pool.give_back(self._connection)
        else:
            self._connection.close()


def _parse_event(payload: str, where: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError:
        raise ServerProblem("protocol", f"{where} sent a stream event that is not JSON ({payload[:60]!r}): check that serverUrl is an OpenAI-compatible server") from None
    if not isinstance(event, dict):
        raise ServerProblem("protocol", f"{where} sent a stream event that is not a JSON object: check that serverUrl is an OpenAI-compatible server")
    if isinstance(event.get("error"), (dict, str)):
        raise ServerProblem("http", f"{where} failed during the stream ({_error_text(event)}): see the server's log")
    return event


def open_stream(pool: ConnectionPool, path: str, body: dict[str, Any], cutter: Cutter) -> Stream:
    """POST ``body`` to ``path``; the event stream once the response headers arrived."""
    connection, response = _send(pool, "POST", path, body, cutter)
    if response.status != 200:
        raise _status_problem(pool, connection, response)
    kind = response.getheader("Content-Type", "")
    if "text/event-stream" not in kind:
        raw = _read_limited(response)
        connection.close()
        raise ServerProblem(
            "protocol", f"{pool.endpoint.display} answered a streamed request with {kind or 'no content type'} ({raw[:60]!r}): check that serverUrl is an OpenAI-compatible server"
        )
    return Stream(pool, connection, response, cutter)


def request_json(pool: ConnectionPool, method: str, path: str, body: dict[str, Any] | None = None, cutter: Cutter | None = None) -> Any:
    cutter = cutter or Cutter()
    connection, response = _send(pool, method, path, body, cutter)
    if response.status != 200:
        raise _status_problem(pool, connection, response)
    raw = _read_limited(response, limit=1 << 22)
    if cutter.finish() and not response.will_close and response.isclosed():
        pool.give_back(connection)
    else:
        connection.close()
    if cutter.reason is not None:
        raise ServerProblem("aborted", cutter.reason)
    try:
        return json.loads(raw)
    except ValueError:
        raise ServerProblem("protocol", f"{pool.endpoint.display}{path} answered with a body that is not JSON ({raw[:60]!r}): check that serverUrl is an OpenAI-compatible server") from None


_STALE = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


def _send(pool: ConnectionPool, method: str, path: str, body: dict[str, Any] | None, cutter: Cutter):
    endpoint = pool.endpoint
    data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
    for attempt in range(2):
        connection, reused = pool.take()
        connected = reused
        try:
            if connection.sock is None:
                connection.connect()
                connection.sock.settimeout(endpoint.read_timeout_s)  # type: ignore[attr-defined]  # connect() set it
            connected = True
            cutter.attach(connection)
            if cutter.reason is not None:
                raise ServerProblem("aborted", cutter.reason)
            connection.request(method, endpoint.base_path + path, body=data, headers=endpoint.headers())
            return connection, connection.getresponse()
        except ServerProblem:
            connection.close()
            raise
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            if cutter.reason is not None:
                raise ServerProblem("aborted", cutter.reason) from None
            if reused and attempt == 0 and isinstance(error, _STALE):
                continue  # an idle keep-alive connection the server had closed: once more, afresh
            if connected and isinstance(error, (socket.timeout, TimeoutError)):
                raise ServerProblem("timeout", f"{endpoint.display} did not answer within {endpoint.read_timeout_s:.0f} s: check the server's load") from None
            raise _connect_problem(endpoint, error) from None
    raise AssertionError("unreachable")


def _connect_problem(endpoint: Endpoint, error: BaseException) -> ServerProblem:
    where = endpoint.display
    if isinstance(error, socket.gaierror):
        return ServerProblem("connect", f"cannot resolve the host {endpoint.host!r} of {where} ({error.strerror or error}): fix serverUrl, or check the network and DNS")
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)
        return ServerProblem(
            "connect", f"TLS with {where} failed ({reason}): use http:// if the server has no TLS, or trust its certificate (SSL_CERT_FILE)"
        )
    if isinstance(error, ConnectionRefusedError):
        return ServerProblem("connect", f"cannot connect to {where} (connection refused): start the model server, or fix serverUrl")
    if isinstance(error, (socket.timeout, TimeoutError)):
        return ServerProblem(
            "connect", f"no answer from {where} within {endpoint.connect_timeout_s * 1000:.0f} ms: check that the server is up and reachable, or raise connectTimeoutMs"
        )
    if isinstance(error, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
        return ServerProblem("connect", f"{where} closed the connection without answering: check that serverUrl is an HTTP model server (and http:// vs https://)")
    if isinstance(error, http.client.HTTPException):
        return ServerProblem("protocol", f"{where} did not answer in HTTP ({type(error).__name__}): check that serverUrl is an OpenAI-compatible server")
    return ServerProblem("connect", f"cannot connect to {where} ({error.strerror if isinstance(error, OSError) and error.strerror else error}): check serverUrl and the network")


def _read_limited(response: http.client.HTTPResponse, limit: int = _ERROR_BODY_BYTES) -> bytes:
    try:
        return response.read(limit)
    except (OSError, http.client.HTTPException):
        return b""


def _error_text(body: Any) -> str:
    """The server's own explanation from an OpenAI-style error body, shortened."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            error = error.get("message") or error.get("detail") or error
        detail = body.get("detail")
        text = error if isinstance(error, str) else detail if isinstance(detail, str) else json.dumps(error)[:160]
    else:
        text = str(body)
    return " ".join(text.split())[:200]


def _status_problem(pool: ConnectionPool, connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> ServerProblem:
    status, where = response.status, pool.endpoint.display
    raw = _read_limited(response)
    connection.close()
    try:
        detail = _error_text(json.loads(raw))
    except ValueError:
        detail = " ".join(raw.decode("utf-8", errors="replace").split())[:120] or response.reason
    if status in (401, 403):
        fix = (
            "check the key in the environment variable named by apiKeyEnv"
            if pool.endpoint.api_key
            else "the server wants an API key: put it in an environment variable and name that variable in apiKeyEnv"
        )
        return ServerProblem("http", f"{where} refused the request (HTTP {status}: {detail}): {fix}", status)
    if status == 404:
        return ServerProblem("http", f"{where} has no such model or path (HTTP 404: {detail}): check serverUrl and serverModel", status)
    if status in (429, 503):
        retry = response.getheader("Retry-After")
        retry_s = float(retry) if retry and retry.strip().replace(".", "", 1).isdigit() else None
        return ServerProblem("overloaded", f"{where} is overloaded (HTTP {status}: {detail}): backing off; add capacity or fewer clients", status, retry_s)
    if status == 400:
        return ServerProblem("http", f"{where} rejected the request (HTTP 400: {detail}): check serverModel and that the server runs the same model as the model setting", status)
    return ServerProblem("http", f"{where} failed (HTTP {status}: {detail}): see the server's log", status)
