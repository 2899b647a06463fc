"""Moving LSP messages over a byte stream: ``Content-Length`` framing, stdio and TCP.

This replaces pygls 2.1's ``start_io``/``start_tcp`` loops, which
- skipped a header block without a valid ``Content-Length`` silently, after which its body
  swallowed the next message's header, so the next, well-formed message was lost as well;
- let ``exit`` end the stdio server with exit code 0 even without ``shutdown``, and in TCP mode
  raised ``SystemExit`` inside the connection callback (the traceback on every exit);
- logged a traceback and re-raised ``BrokenPipeError`` (inside callbacks) when writing to a
  client that had gone.

Here one loop serves one client: it reads frames, hands each body to
``SantaCoderProtocol.receive`` and stops at ``exit`` (with LSP's exit code) or at the end of
the stream (exit code 0). Reading stdin happens in a daemon thread that feeds an
``asyncio.StreamReader`` from the raw descriptor, so a read that is still blocked cannot hold
the process up at exit (and no lock of ``sys.stdin`` is held by that thread).

A frame is bounded (``FrameLimits``): a body over ``max_bytes`` is read and thrown away, and
the rest of a body must arrive within ``rest_timeout_s`` of its header, else what came of it is
dropped and reading goes on with the next header. Before, ``Content-Length: 100000000`` and
then silence blocked every later message forever.

TCP serves one client at a time, each connection a fresh session (new documents, settings
and engine host), and goes on listening after a client leaves or sends ``exit``; a client
that connects while another is served gets a JSON-RPC error and is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass
from typing import Awaitable, Callable

from .protocol import SantaCoderProtocol

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1 << 16
HEADER_LINE_LIMIT_BYTES = 1 << 20  # a longer line where a header belongs is dropped as garbage
_CONTENT_LENGTH = re.compile(rb"content-length:[ \t]*([^\r\n]*?)[ \t]*\r?\n\Z", re.IGNORECASE)
_HEADER = re.compile(rb"\A[A-Za-z][A-Za-z0-9-]*:[^\r\n]*\r?\n\Z")


DEFAULT_MAX_MESSAGE_BYTES = 256 << 20  # a 100 MB document's didOpen fits; a runaway header does not
DEFAULT_FRAME_TIMEOUT_S = 30.0
_READ_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class FrameLimits:
    """``max_bytes``: the largest body taken; ``rest_timeout_s``: how long the body of a frame
    may take to arrive after its header."""

    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    rest_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S


async def read_frame(reader: asyncio.StreamReader, limits: FrameLimits = FrameLimits()) -> bytes | None:
    """The next message body; ``None`` at the end of the stream. What is not a header where a
    header belongs is logged and skipped, and a ``Content-Length`` header is found even at the
    end of such a line, so a broken message costs only itself, not the one after it. A body
    over the limits is dropped (logged) and the next frame is read."""
    while True:
        length = await _read_header(reader)
        if length is None:
            return None
        body = await _read_body(reader, length, limits)
        if body is not None:
            return body
        if reader.at_eof():
            return None


async def _read_header(reader: asyncio.StreamReader) -> int | None:
    """The ``Content-Length`` of the next header block; ``None`` at the end of the stream."""
    length: int | None = None
    in_header = False
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # over the limit: asyncio has dropped it from the buffer
            log.warning("bad input from the client: skipped a line of over %d bytes where a message header belongs", HEADER_LINE_LIMIT_BYTES)
            in_header = True
            continue
        if not line:
            if in_header:
                log.warning("the client's stream ended inside a message header")
            return None
        if line in (b"\r\n", b"\n"):  # the blank line that ends a header block
            if length is not None:
                break
            if in_header:
                log.warning("bad input from the client: skipped a message without a valid Content-Length header")
            in_header = False
            continue
        in_header = True
        match = _CONTENT_LENGTH.search(line)
        if match is None:
            if not _HEADER.match(line):
                log.warning("bad input from the client: skipped %d bytes that are no message header: %r", len(line), line[:80])
            continue
        if match.start() > 0:
            log.warning("bad input from the client: skipped %d bytes before a Content-Length header: %r", match.start(), line[: min(match.start(), 80)])
        value = match.group(1)
        length = int(value) if value.isdigit() else None
        if length is None:
            log.warning("bad input from the client: Content-Length %r is no byte count; skipping that message", value.decode("latin-1"))
    return length


async def _read_body(reader: asyncio.StreamReader, length: int, limits: FrameLimits) -> bytes | None:
    """``length`` bytes, or ``None`` when the body is dropped: over ``max_bytes`` (read and
    thrown away), not all there within ``rest_timeout_s``, or cut by the end of the stream."""
    oversized = length > limits.max_bytes
    if oversized:
        log.warning(
            "bad input from the client: dropping a message of %d bytes, over the limit of %d (--max-message-mb)", length, limits.max_bytes
        )
    parts: list[bytes] = []
    received = 0

    async def read_all() -> bool:
        nonlocal received
        while received < length:
            chunk = await reader.read(min(length - received, _READ_BODY_BYTES))
            if not chunk:
                log.warning("the client's stream ended inside a message (%d of %d bytes)", received, length)
                return False
            received += len(chunk)
            if not oversized:
                parts.append(chunk)
        return True

    try:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(limits.rest_timeout_s):  # one deadline, no task per read
                complete = await read_all()
        else:  # Python 3.10 has no asyncio.timeout: one task for the whole body
            complete = await asyncio.wait_for(read_all(), limits.rest_timeout_s)
    except (TimeoutError, asyncio.TimeoutError):  # the same class from 3.11 on
        log.warning(
            "bad input from the client: dropped a message whose body did not arrive within %.0f s of its header "
            "(%d of %d bytes came; --frame-timeout-s); reading the next message",
            limits.rest_timeout_s, received, length,
        )  # fmt: skip
        return None
    if not complete:
        return None
    return None if oversized else b"".join(parts)


async def serve(protocol: SantaCoderProtocol, reader: asyncio.StreamReader, writer: "ClientWriter", limits: FrameLimits = FrameLimits()) -> int:
    """Handle messages until ``exit`` or the end of the stream; returns the exit code."""
    protocol.set_writer(writer)
    try:
        while protocol.exit_code is None:
            body = await read_frame(reader, limits)
            if body is None:
                how = "after shutdown" if protocol._shutdown else "without shutdown and exit"
                log.info("the client closed the connection %s: stopping", how)
                return 0
            try:
                protocol.receive(body)
            except Exception:  # one bad message must not end the session
                log.exception("could not handle a message from the client")
        return protocol.exit_code
    finally:
        writer.close()


class ClientWriter:
    """pygls' writer interface (``write``/``close``) over a send function. Once the client
    has gone, what is left to send is dropped, and that is logged once: a client that
    disappears is normal, not an error with a traceback."""

    def __init__(self, send: Callable[[bytes], None], close: Callable[[], None]):
        self._send = send
        self._close = close
        self.gone = False

    def write(self, data: bytes) -> None:
        if self.gone:
            return
        try:
            self._send(data)
        except (OSError, ValueError, RuntimeError) as error:  # broken pipe, closed file or transport
            self.gone = True
            log.info("the client has gone (%s): dropping what is left to send", error)

    def close(self) -> None:
        self.gone = True  # answers to requests cancelled at exit have nowhere to go
        try:
            self._close()
        except (OSError, ValueError, RuntimeError):
            pass


# -- stdio --------------------------------------------------------------------------------------


def run_stdio(protocol: SantaCoderProtocol, stdin_fd: int, stdout, limits: FrameLimits = FrameLimits()) -> int:
    """Serve one client on a descriptor (stdin) and a binary stream (stdout); the exit code."""

    def send(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=HEADER_LINE_LIMIT_BYTES)
        threading.Thread(target=_pump, args=(stdin_fd, loop, reader), name="lsp-stdin", daemon=True).start()
        return await serve(protocol, reader, ClientWriter(send, stdout.close), limits)

    return asyncio.run(main())


def _pump(fd: int, loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader) -> None:
    """Feed what arrives on ``fd`` to ``reader`` on the loop (runs in a daemon thread)."""
    while True:
        try:
            chunk = os.read(fd, READ_CHUNK_BYTES)
        except OSError:
            chunk = b""
        try:
            if not chunk:
                loop.call_soon_threadsafe(reader.feed_eof)
                return
            loop.call_soon_threadsafe(reader.feed_data, chunk)
        except RuntimeError:  # the loop has closed: the server is exiting
            return


# -- TCP ----------------------------------------------------------------------------------------


SECOND_CLIENT_WAIT_S = 5.0  # how long a refused client may take to send the request we answer
REQUEST_FAILED = -32803  # LSP's RequestFailed


def run_tcp(
    new_session: Callable[[], SantaCoderProtocol],
    host: str,
    port: int,
    on_listening: Callable[[list[tuple[str, int]]], None],
    limits: FrameLimits = FrameLimits(),
    on_session_end: Callable[[SantaCoderProtocol], None] = lambda protocol: None,
    make_stop: "Callable[[], Awaitable[asyncio.Event]] | None" = None,
) -> int:
    """Listen on ``host``:``port`` and serve one client at a time until the event that
    ``make_stop`` gives (made on the loop; SIGINT/SIGTERM in the entry point) is set; returns
    0 then. Each connection gets a fresh session
    from ``new_session``, and ``on_session_end`` when it ends (``exit``, end of stream or a
    dropped connection). A client that connects while another is served gets a JSON-RPC
    error (answering its first request's id when it sends one) and is closed: the server
    holds one client's documents and settings. ``on_listening`` gets the bound
    (address, port) pairs. Raises ``OSError`` (or ``OverflowError``) when it cannot listen."""

    async def main() -> int:
        stopped = await make_stop() if make_stop is not None else asyncio.Event()
        current: list[str] = []  # the peer being served, if any

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            if current:
                try:
                    await _refuse(reader, writer, peer, current[0])
                except asyncio.CancelledError:  # the server is stopping
                    writer.close()
                return
            current.append(_peer_text(peer))
            log.info("client connected from %s: a new session", current[0])

            def send(data: bytes) -> None:
                if writer.is_closing():
                    raise ConnectionResetError("the connection is closed")
                writer.write(data)

            protocol = new_session()
            try:
                code = await serve(protocol, reader, ClientWriter(send, writer.close), limits)
                log.info("session with %s ended (exit code %d); listening for the next client", current[0], code)
            except Exception:  # one session's failure must not stop the listener
                log.exception("the session with %s failed; listening for the next client", current[0])
            except asyncio.CancelledError:  # the server is stopping; asyncio would log a traceback for it
                log.info("stopping: closed the session with %s", current[0])
            finally:
                current.clear()
                on_session_end(protocol)

        listener = await asyncio.start_server(on_client, host, port, limit=HEADER_LINE_LIMIT_BYTES)
        on_listening([sock.getsockname()[:2] for sock in listener.sockets])
        try:
            await stopped.wait()
            return 0
        finally:
            listener.close()

    return asyncio.run(main())


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer, served: str) -> None:
    """Answer a second client's first request with an error that says why, then close it."""
    message = f"this santacoder-lsp server already serves a client ({served}) and serves one at a time: start another server on another --port"
    log.warning("refused a client from %s: %s", _peer_text(peer), message)
    msg_id = None
    try:
        body = await asyncio.wait_for(read_frame(reader, FrameLimits(max_bytes=1 << 20, rest_timeout_s=SECOND_CLIENT_WAIT_S)), SECOND_CLIENT_WAIT_S)
        data = json.loads(body) if body else None
        if isinstance(data, dict) and isinstance(data.get("id"), (int, str)) and not isinstance(data.get("id"), bool):
            msg_id = data["id"]
    except (asyncio.TimeoutError, TimeoutError, ValueError, OSError):
        pass  # it sent nothing usable: answer with a null id
    payload = json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": REQUEST_FAILED, "message": message}}).encode()
    try:
        writer.write(b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
        await writer.drain()
    except (OSError, RuntimeError):
        pass
    finally:
        writer.close()


def _peer_text(peer) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return str(peer)
