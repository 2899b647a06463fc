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
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from typing import Callable

from .protocol import SantaCoderProtocol

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1 << 16
HEADER_LINE_LIMIT_BYTES = 1 << 20  # a longer line where a header belongs is dropped as garbage
_CONTENT_LENGTH = re.compile(rb"content-length:[ \t]*([^\r\n]*?)[ \t]*\r?\n\Z", re.IGNORECASE)
_HEADER = re.compile(rb"\A[A-Za-z][A-Za-z0-9-]*:[^\r\n]*\r?\n\Z")


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next message body; ``None`` at the end of the stream. What is not a header where a
    header belongs is logged and skipped, and a ``Content-Length`` header is found even at the
    end of such a line, so a broken message costs only itself, not the one after it."""
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
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        log.warning("the client's stream ended inside a message (%d of %d bytes)", len(error.partial), length)
        return None


async def serve(protocol: SantaCoderProtocol, reader: asyncio.StreamReader, writer: "ClientWriter") -> int:
    """Handle messages until ``exit`` or the end of the stream; returns the exit code."""
    protocol.set_writer(writer)
    try:
        while protocol.exit_code is None:
            body = await read_frame(reader)
            if body is None:
                how = "after shutdown" if protocol._shutdown else "without shutdown and exit"
                log.info("the client closed the connection %s: stopping", how)
                return 0
            try:
                protocol.receive(body)
            except Exception:  # noqa: BLE001 - one bad message must not end the session
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


def run_stdio(protocol: SantaCoderProtocol, stdin_fd: int, stdout) -> int:
    """Serve one client on a descriptor (stdin) and a binary stream (stdout); the exit code."""

    def send(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=HEADER_LINE_LIMIT_BYTES)
        threading.Thread(target=_pump, args=(stdin_fd, loop, reader), name="lsp-stdin", daemon=True).start()
        return await serve(protocol, reader, ClientWriter(send, stdout.close))

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


def run_tcp(protocol: SantaCoderProtocol, host: str, port: int, on_listening: Callable[[list[tuple[str, int]]], None]) -> int:
    """Listen on ``host``:``port``, serve the first client that connects and return its exit
    code when it exits or disconnects. Later clients are refused while one is served: the
    server holds one client's documents and settings. ``on_listening`` gets the bound
    (address, port) pairs. Raises ``OSError`` when it cannot listen."""

    async def main() -> int:
        finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            if finished.done() or protocol.writer is not None:
                log.warning("refused a second client (%s): this server serves one client at a time", peer)
                writer.close()
                return
            log.info("client connected from %s", peer)

            def send(data: bytes) -> None:
                if writer.is_closing():
                    raise ConnectionResetError("the connection is closed")
                writer.write(data)

            code = await serve(protocol, reader, ClientWriter(send, writer.close))
            if not finished.done():
                finished.set_result(code)

        listener = await asyncio.start_server(on_client, host, port, limit=HEADER_LINE_LIMIT_BYTES)
        on_listening([sock.getsockname()[:2] for sock in listener.sockets])
        try:
            return await finished
        finally:
            listener.close()

    return asyncio.run(main())
