"""Entry point of ``santacoder-lsp``.

    santacoder-lsp [--stdio | --tcp --host 127.0.0.1 --port 2087] [--model M --device D ...]
    santacoder-lsp complete FILE --line L --character C [--json] [--context-file PATH ...] [--workspace DIR] [--model M ...]

The server speaks LSP on stdin/stdout (the default; ``--stdio`` is accepted because VS Code's
client may add it) or on TCP, on loopback unless ``--host`` says otherwise. Over stdio it
exits when the client sends ``exit`` (code 0 after ``shutdown``, else 1) or closes the
connection (code 0). Over TCP it serves one client at a time, each connection a fresh
session, and keeps listening after a client leaves, until SIGINT or SIGTERM (code 0).
Model options given here are the defaults that the client's settings override. In stdio mode the protocol gets a private copy of file descriptor 1 and
descriptor 1 itself is pointed at stderr, so a stray print (ours or a library's, Python or C)
cannot corrupt the protocol stream.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from . import __version__
from .settings import SPECS, Settings, parse_settings
from .transport import DEFAULT_FRAME_TIMEOUT_S, DEFAULT_MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from .client_log import ClientLogHandler

log = logging.getLogger("lsp_server")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The settings that have a command-line option (``SettingSpec.flag_help``), named, checked
    and defaulted as in ``lsp_server.settings``, then the log options."""
    group = parser.add_argument_group("model (the client's settings override these)")
    defaults = Settings().to_json()
    for spec in SPECS:
        if spec.flag_help is None:
            continue
        default = defaults[spec.key]
        shown = f"(default: {default})" if default not in ("", False) else ""
        help_text = " ".join(part for part in (spec.flag_help, shown) if part) or None
        if spec.json_type == "boolean":
            group.add_argument(spec.flag, action="store_true", default=None, help=help_text)
        elif spec.choices:
            group.add_argument(spec.flag, choices=spec.choices, help=help_text)
        else:
            kind = {"integer": int, "number": float}.get(spec.json_type, str)
            group.add_argument(spec.flag, type=kind, help=help_text)
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--log-file", type=Path, help="also append the log to this file")


def _settings_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    raw = {spec.key: getattr(args, spec.attr) for spec in SPECS if spec.flag_help is not None and getattr(args, spec.attr) is not None}
    settings, problems = parse_settings(raw)
    if problems:
        parser.error("; ".join(problems))
    return settings


def _configure_logging(level: str, log_file: Path | None = None) -> None:
    """``level`` applies to stderr and the log file; the client's log (``window/logMessage``)
    always gets INFO and above from our loggers. DEBUG also shows pygls' protocol traffic."""
    numeric = getattr(logging, level)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setLevel(numeric)
    root_level = logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
    logging.basicConfig(level=root_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    for name in ("lsp_server", "model_runtime"):
        logging.getLogger(name).setLevel(min(numeric, logging.INFO))


# -- the server ---------------------------------------------------------------------------------


def run_server(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="santacoder-lsp", description="LSP server for local fill-in-the-middle completion.")
    parser.add_argument("--version", action="version", version=f"santacoder-lsp {__version__}")
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="speak LSP on stdin/stdout (the default)")
    transport.add_argument("--tcp", action="store_true", help="listen on --host/--port instead")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=2087, help="TCP port (default 2087)")
    parser.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_BYTES / 2**20,
                        help="drop a message larger than this (default %(default).0f MiB)")  # fmt: skip
    parser.add_argument("--frame-timeout-s", type=float, default=DEFAULT_FRAME_TIMEOUT_S,
                        help="drop a message whose body has not all come this long after its header (default %(default).0f s)")  # fmt: skip
    parser.add_argument("--clientProcessId", help=argparse.SUPPRESS)  # some LSP clients add it
    _add_model_options(parser)
    args = parser.parse_args(argv)
    problem = _transport_problem(args)
    if problem:
        print(f"santacoder-lsp: {problem}", file=sys.stderr)
        return 2
    settings = _settings_from_args(parser, args)
    _configure_logging(args.log_level, args.log_file)

    from .client_log import ClientLogHandler
    from .server import create_server
    from .transport import FrameLimits, run_stdio

    limits = FrameLimits(max_bytes=int(args.max_message_mb * 2**20), rest_timeout_s=args.frame_timeout_s)
    server = create_server(settings)
    forward = ClientLogHandler(server)
    for name in ("lsp_server", "model_runtime"):
        logging.getLogger(name).addHandler(forward)
    log.info("santacoder-lsp %s starting (%s)", __version__, "tcp" if args.tcp else "stdio")
    if args.tcp:
        return _serve_tcp(settings, forward, args.host, args.port, limits)
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return run_stdio(server.protocol, sys.stdin.fileno(), protocol_out, limits)


def _transport_problem(args: argparse.Namespace) -> str | None:
    if not 0 <= args.port <= 65535:
        return f"--port must be from 0 to 65535, got {args.port}"
    if not args.max_message_mb > 0:
        return f"--max-message-mb must be more than 0, got {args.max_message_mb:g}"
    if not args.frame_timeout_s > 0:
        return f"--frame-timeout-s must be more than 0, got {args.frame_timeout_s:g}"
    return None


def _serve_tcp(settings: Settings, forward: ClientLogHandler, host: str, port: int, limits) -> int:
    """One fresh server (documents, settings, engine host) per connection, until SIGINT or
    SIGTERM. The client log follows the current session."""
    import signal

    from .server import create_server
    from .transport import run_tcp

    def new_session():
        server = create_server(settings)
        forward.server = server
        return server.protocol

    def end_session(protocol) -> None:
        server = protocol._server
        for task in list(server._tasks):  # a model load the session started: not for the next one
            task.cancel()
        server.completer.lanes.supersede_all()
        server.host.close()  # a load thread still running is discarded when it ends

    async def stop_on_signals() -> asyncio.Event:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        return stop

    try:
        return run_tcp(new_session, host, port, _announce_listening, limits, end_session, stop_on_signals)
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or error
        log.error("cannot listen on %s:%d (%s): choose another --port or --host", host, port, reason)
        return 1


def _announce_listening(addresses: list[tuple[str, int]]) -> None:
    """Say where the server listens, and warn loudly when that is beyond this machine: LSP
    has no authentication, and a client chooses which model directory the server loads (and,
    through trustRemoteCode, whether its code runs)."""
    where = ", ".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in addresses)
    if all(ipaddress.ip_address(host.split("%")[0]).is_loopback for host, _ in addresses):
        log.info("listening on %s (loopback only)", where)
        return
    log.warning(
        "listening on %s, NOT loopback only: any machine that can reach this one on that port can use this server, "
        "send it code and change which model it loads; there is no authentication. Use --host 127.0.0.1 "
        "(the default) unless every machine on this network is trusted",
        where,
    )


# -- the headless command -----------------------------------------------------------------------


def run_complete(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="santacoder-lsp complete",
        description="Print the completion at a position of a file (what the editor would show as ghost text).",
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--line", type=int, required=True, help="0-based line")
    parser.add_argument("--character", type=int, required=True, help="0-based column in UTF-16 code units, as in LSP")
    parser.add_argument("--json", action="store_true", help="print a JSON object with the text and stats")
    from .headless import InputError, add_context_options, check_position, read_context_files, read_source, workspace_folder

    add_context_options(parser)
    _add_model_options(parser)
    args = parser.parse_args(argv)
    settings = replace(_settings_from_args(parser, args), debounce_ms=0)
    _configure_logging("WARNING" if args.log_level == "INFO" else args.log_level, args.log_file)
    from .documents import Document
    from .languages import language_id_for_path

    try:  # a bad file or position: one line, no usage text (the command line itself was fine)
        text, encoding = read_source(args.file)
        document = Document(args.file.resolve().as_uri(), text, language_id=language_id_for_path(args.file.name))
        offset = check_position(document, args.file, args.line, args.character)
        context = (read_context_files(args.context_file, document), workspace_folder(args.file, args.workspace))
    except InputError as error:
        print(f"santacoder-lsp: {error}", file=sys.stderr)
        return 1
    try:
        out = asyncio.run(_complete_once(document, offset, settings, context))
    except _LoadFailed as error:
        print(f"santacoder-lsp: {error}", file=sys.stderr)
        return 1
    out["encoding"] = encoding
    if args.json:
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(out["text"])
    sys.stdout.flush()
    return 0


class _LoadFailed(Exception):
    pass


async def _complete_once(document, offset: int, settings: Settings, context) -> dict[str, Any]:
    """``context``: (the ``--context-file`` documents, the workspace folder), see ``headless``."""
    from .completer import Completer
    from .engine_host import EngineHost
    from .headless import feed_context
    from .stats import ServerStats

    host = EngineHost()
    error = await host.load(settings.load_options())
    if error:
        raise _LoadFailed(error)
    completer = Completer(host, ServerStats())
    if settings.extra_context_tokens > 0:
        await feed_context(completer.context, document, *context)
    suggestion = await completer.suggest(document.uri, document.text, offset, settings, eol=document.eol, language_id=document.language_id)
    model = host.describe()
    host.close()
    result = suggestion.result
    return {
        "text": suggestion.text,
        "mode": suggestion.mode,
        "offset": offset,
        "stopReason": result.stop_reason.value if result else None,
        "latencyMs": round(suggestion.latency_ms, 2),
        "prefixTokens": suggestion.windows.prefix_tokens if suggestion.windows else 0,
        "suffixTokens": suggestion.windows.suffix_tokens if suggestion.windows else 0,
        "stats": asdict(result.stats) if result else None,
        "context": completer.context.usage(),
        "model": model,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "complete":
        return run_complete(argv[1:])
    return run_server(argv)


if __name__ == "__main__":
    sys.exit(main())
