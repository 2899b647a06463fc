"""The language server: thin handlers named after the LSP methods they serve.

State lives on ``SantaCoderServer`` and is touched only on the event loop; worker threads
(model load, decode) reach it through ``loop.call_soon_threadsafe``. Nothing here writes to
stdout: logs go to stderr (``logging``) and to the client (``window/logMessage``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from . import __version__
from .completer import Completer, Suggestion
from .context import window_reach_chars
from .context_feed import ContextFeed
from .documents import DocumentStore, Encoding
from .engine_adapter import load_completion_engine
from .engine_host import EngineHost, Loader
from .scheduler import Ticket
from .protocol import SantaCoderProtocol
from .settings import Settings, parse_settings, problems_message
from .stats import ServerStats

log = logging.getLogger(__name__)

ACCEPTED_COMMAND = "santacoder.accepted"
STATS_REQUEST = "santacoder/stats"
DOCUMENT_STATE_REQUEST = "santacoder/documentState"
STATS_LOG_EVERY_REQUESTS = 100
PROGRESS_CREATE_TIMEOUT_S = 5.0


class SantaCoderServer(LanguageServer):
    def __init__(self, settings: Settings = Settings(), loader: Loader = load_completion_engine):
        super().__init__("santacoder-lsp", __version__, protocol_cls=SantaCoderProtocol)
        self.settings = settings
        self.documents = DocumentStore()
        self.stats = ServerStats()
        self.host = EngineHost(loader)
        self.completer = Completer(self.host, self.stats)
        self.context_feed = ContextFeed(self.completer.context, lambda uri: getattr(self.documents.get(uri), "text", None))
        self.loop: asyncio.AbstractEventLoop | None = None  # set once the client is initialized
        self._pending_problems: list[str] = []
        self._reported: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.in_flight = 0  # completion requests being answered now (debounce, queue or decode)
        self.peak_in_flight = 0

    @property
    def encoding(self) -> Encoding:
        value = getattr(self.workspace.position_encoding, "value", self.workspace.position_encoding)
        return value if value in ("utf-8", "utf-16", "utf-32") else "utf-16"

    def report_once(self, message: str, level: types.MessageType = types.MessageType.Warning) -> None:
        """Show ``message`` to the user the first time only; always log it."""
        log.log(logging.ERROR if level == types.MessageType.Error else logging.WARNING, "%s", message)
        if message in self._reported:
            return
        self._reported.add(message)
        self.window_show_message(types.ShowMessageParams(type=level, message=f"SantaCoder: {message}"))

    def apply_settings(self, raw: Any) -> None:
        settings, problems = parse_settings(raw, self.settings)
        reload = settings.load_options() != self.settings.load_options()
        self.settings = settings
        if self.loop is None:  # before `initialized`: report and load then
            self._pending_problems.extend(problems)
            return
        if (message := problems_message(problems)) is not None:
            self.report_once(message)
        if reload:
            self.start_model_load()

    def client_initialized(self) -> None:
        """The client is ready for notifications: report what parsing found, load the model."""
        self.loop = asyncio.get_running_loop()
        if (message := problems_message(self._pending_problems)) is not None:
            self.report_once(message)
        self._pending_problems.clear()
        self.start_model_load()

    def start_model_load(self) -> None:
        self.completer.lanes.supersede_all()  # decodes on the old engine end at their next step
        task = asyncio.ensure_future(load_model(self))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def client_has_snippets(self) -> bool:
        completion = self.client_capabilities.text_document and self.client_capabilities.text_document.completion
        item = completion and completion.completion_item
        return bool(item and item.snippet_support)

    def client_has_inline_completion(self) -> bool:
        text_document = self.client_capabilities.text_document
        return text_document is not None and text_document.inline_completion is not None


async def load_model(ls: SantaCoderServer) -> None:
    """Load the model from the current settings, with ``$/progress`` when the client has it."""
    options = ls.settings.load_options()
    token = f"santacoder-load-{uuid.uuid4().hex[:8]}"
    progress = await _create_progress(ls, token)
    if progress:
        ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="SantaCoder: loading model", message=options.model, percentage=0))
    log.info("loading model %r (device %s, dtype %s, quantization %s)", options.model, options.device, options.dtype, options.quantization)
    loop = asyncio.get_running_loop()

    def report(stage: str, fraction: float | None) -> None:  # runs in the loading thread
        if progress:
            percentage = None if fraction is None else max(0, min(100, int(fraction * 100)))
            value = types.WorkDoneProgressReport(message=stage, percentage=percentage)
            loop.call_soon_threadsafe(ls.work_done_progress.report, token, value)

    started = time.perf_counter()
    error = await ls.host.load(options, report)
    superseded = ls.host.options is not options
    if progress:
        outcome = "failed" if error else "replaced by a newer load" if superseded else "ready"
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=outcome))
    if error:
        ls.report_once(f"model not loaded, completions are off: {error}", types.MessageType.Error)
    elif not superseded and ls.host.engine is not None:
        info = ls.host.engine.info
        log.info("model %r ready on %s (%s) in %.1f s, %d-token context", info.name, info.device, info.dtype, time.perf_counter() - started, info.context_tokens)


async def _create_progress(ls: SantaCoderServer, token: str) -> bool:
    window = ls.client_capabilities.window
    if window is None or not window.work_done_progress:
        return False
    try:
        await asyncio.wait_for(ls.work_done_progress.create_async(token), PROGRESS_CREATE_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - progress is a nicety; the load goes on without it
        log.info("no progress reporting: %s", error)
        return False
    return True


async def _suggest_at(
    ls: SantaCoderServer, uri: str, position: types.Position, *, invoked: bool = False
) -> tuple[Suggestion, types.Position] | None:
    """``invoked``: the user asked explicitly, so there is nothing to debounce."""
    ticket = ls.completer.lanes.begin(uri)  # supersedes this document's older requests
    try:
        return await _suggest_with(ls, ticket, position, invoked)
    finally:
        ls.completer.lanes.finish(ticket)


async def _suggest_with(ls: SantaCoderServer, ticket: Ticket, position: types.Position, invoked: bool) -> tuple[Suggestion, types.Position] | None:
    uri = ticket.uri
    if not await ls.completer.lanes.settle(ticket):
        ls.stats.count("superseded")
        return None
    document = ls.documents.get(uri)
    if document is None:
        log.info("completion requested for %s, which is not open: empty answer", uri)
        return None
    if not ls.settings.language_enabled(document.language_id):
        ls.stats.count("disabled")
        return None
    offset = document.offset_at(position, ls.encoding)
    cursor = document.position_at(offset, ls.encoding)
    version = document.version
    engine = ls.host.engine
    excerpt, base = document.excerpt(offset, window_reach_chars(engine.info.context_tokens if engine else 2048))
    settings = replace(ls.settings, debounce_ms=0) if invoked else ls.settings
    ls.in_flight += 1
    ls.peak_in_flight = max(ls.peak_in_flight, ls.in_flight)
    try:
        suggestion = await ls.completer.suggest(
            uri, excerpt, offset - base, settings, eol=document.eol, base=base, document_chars=len(document),
            language_id=document.language_id, ticket=ticket,
        )  # fmt: skip
    finally:
        ls.in_flight -= 1
    suggestion = replace(suggestion, document_version=version)
    ls.stats.answered(uri, suggestion.suggestion_id)
    if ls.stats.counts["requests"] % STATS_LOG_EVERY_REQUESTS == 0:
        log.info("%s", ls.stats.log_line())
    return suggestion, cursor


def _accept_command(suggestion: Suggestion) -> types.Command:
    """Arguments: the suggestion's id, then the document version it was made for (clients and
    tests can check that an answer never belongs to an older version than its request's)."""
    arguments = [suggestion.suggestion_id, suggestion.document_version]
    return types.Command(title="Accept suggestion", command=ACCEPTED_COMMAND, arguments=arguments)


# -- handlers ---------------------------------------------------------------------------------


def initialize(ls: SantaCoderServer, params: types.InitializeParams) -> None:
    ls.apply_settings(params.initialization_options)
    ls.context_feed.set_workspace(params.root_uri, params.root_path, params.workspace_folders)


async def initialized(ls: SantaCoderServer, params: types.InitializedParams) -> None:
    ls.client_initialized()


def workspace_did_change_configuration(ls: SantaCoderServer, params: types.DidChangeConfigurationParams) -> None:
    ls.apply_settings(params.settings)


def text_document_did_open(ls: SantaCoderServer, params: types.DidOpenTextDocumentParams) -> None:
    uri = params.text_document.uri
    if ls.documents.get(uri) is not None:  # a client bug; the newer text wins
        log.warning("didOpen for %s, which is already open: replacing its text", uri)
        ls.completer.lanes.supersede(uri)  # its answer would be for the old text
    ls.documents.open(params.text_document)
    ls.context_feed.opened(params.text_document)


def text_document_did_change(ls: SantaCoderServer, params: types.DidChangeTextDocumentParams) -> None:
    if ls.documents.change(params, ls.encoding) is None:
        log.warning("didChange for %s, which is not open: ignored", params.text_document.uri)
    ls.context_feed.changed(params)
    ls.completer.lanes.supersede(params.text_document.uri)  # its answer would be for an old version


def text_document_did_close(ls: SantaCoderServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    if ls.documents.get(uri) is None:
        log.warning("didClose for %s, which is not open: ignored", uri)
    ls.context_feed.closed(uri, getattr(ls.documents.get(uri), "text", None))
    ls.documents.close(uri)
    ls.completer.forget(uri)
    ls.stats.closed(uri)


async def text_document_inline_completion(ls: SantaCoderServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    answer = await _suggest_at(ls, params.text_document.uri, params.position, invoked=invoked)
    if answer is None or not answer[0].text:
        return types.InlineCompletionList(items=[])
    suggestion, cursor = answer
    item = types.InlineCompletionItem(
        insert_text=suggestion.text, range=types.Range(start=cursor, end=cursor), command=_accept_command(suggestion)
    )
    return types.InlineCompletionList(items=[item])


async def text_document_completion(ls: SantaCoderServer, params: types.CompletionParams) -> types.CompletionList:
    """The inline suggestion as one item, for clients without inline completion (Neovim 0.11)."""
    mode = ls.settings.completion_items
    if mode == "never" or (mode == "auto" and ls.client_has_inline_completion()):
        return types.CompletionList(is_incomplete=False, items=[])
    invoked = params.context is not None and params.context.trigger_kind == types.CompletionTriggerKind.Invoked
    answer = await _suggest_at(ls, params.text_document.uri, params.position, invoked=invoked)
    if answer is None or not answer[0].text:
        return types.CompletionList(is_incomplete=True, items=[])
    suggestion, cursor = answer
    document = ls.documents.get(params.text_document.uri)
    line = document.line_text(cursor.line) if document is not None else ""
    new_text, text_format = popup_edit_text(suggestion.text, line[: len(line) - len(line.lstrip(" \t"))], ls.client_has_snippets())
    label = next((line.strip() for line in suggestion.text.splitlines() if line.strip()), suggestion.text)
    item = types.CompletionItem(
        label=label[:80],
        kind=types.CompletionItemKind.Text,
        detail="SantaCoder",
        documentation=suggestion.text,  # a plain string: every client takes it
        preselect=True,
        sort_text="0",
        insert_text_format=text_format,
        insert_text_mode=types.InsertTextMode.AdjustIndentation,
        text_edit=types.TextEdit(range=types.Range(start=cursor, end=cursor), new_text=new_text),
        command=_accept_command(suggestion),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def popup_edit_text(text: str, indent: str, snippets: bool) -> tuple[str, types.InsertTextFormat]:
    """The popup item's text: a snippet where the client takes them, else plain text.

    Clients insert a plain-text edit of a popup item only up to its first word (Neovim 0.11),
    so multi-word suggestions go as snippets: ``\\ $ }`` escaped, and the cursor line's
    indentation removed from the following lines because the client adds it back
    (insertTextMode adjustIndentation). A line indented less than the cursor line cannot be
    written that way: such a suggestion stays plain text.
    """
    if not snippets:
        return text, types.InsertTextFormat.PlainText
    first, *rest = text.split("\n")
    lines = [first]
    for line in rest:
        if not line.strip():
            lines.append("\r" if line.endswith("\r") else "")
        elif line.startswith(indent):
            lines.append(line[len(indent) :])
        else:
            return text, types.InsertTextFormat.PlainText
    escaped = "\n".join(lines).replace("\\", "\\\\").replace("$", "\\$").replace("}", "\\}")
    return escaped, types.InsertTextFormat.Snippet


def santacoder_accepted(ls: SantaCoderServer, *args: Any) -> None:
    if args and isinstance(args[0], str):
        ls.stats.accepted(args[0])


def santacoder_stats(ls: SantaCoderServer, params: Any) -> dict[str, Any]:
    out = ls.stats.snapshot()
    out["model"] = ls.host.describe()
    out["settings"] = ls.settings.to_json()
    out["queues"] = {"inFlight": ls.in_flight, "peakInFlight": ls.peak_in_flight, "decodeJobs": len(ls.completer.lanes)}
    out["caches"] = {**ls.completer.cache.usage(), **_kv_usage(ls.host.engine), "openDocuments": len(ls.documents)}
    out["caches"].update(ls.completer.context.usage())
    return out


def _kv_usage(engine: Any) -> dict[str, int]:
    store = getattr(engine, "kv_store", None)  # the real engine's KV slots; test engines have none
    if store is None:
        return {}
    return {"kvSlots": len(store), "kvBytes": store.nbytes, "kvBudgetBytes": store.budget_bytes}


def santacoder_document_state(ls: SantaCoderServer, params: Any) -> dict[str, Any] | None:
    """What the server holds for a document: version, length and SHA-256 of its UTF-8 text,
    so a client (or a test) can check that both sides agree without sending the text back."""
    uri = params.get("uri") if isinstance(params, dict) else getattr(params, "uri", None)
    document = ls.documents.get(uri) if isinstance(uri, str) else None
    if document is None:
        return None
    digest = hashlib.sha256(document.text.encode("utf-8", "surrogatepass")).hexdigest()
    return {"uri": uri, "version": document.version, "length": len(document), "sha256": digest}


def shutdown(ls: SantaCoderServer, params: Any) -> None:
    ls.completer.lanes.supersede_all()
    log.info("%s", ls.stats.log_line())
    ls.host.close()


def create_server(settings: Settings = Settings(), loader: Loader = load_completion_engine) -> SantaCoderServer:
    """A server with every handler registered. ``settings`` are the defaults that the
    client's ``initializationOptions`` and later configuration changes start from."""
    server = SantaCoderServer(settings, loader)
    server.feature(types.INITIALIZE)(initialize)
    server.feature(types.INITIALIZED)(initialized)
    server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(workspace_did_change_configuration)
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(text_document_did_open)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(text_document_did_change)
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(text_document_did_close)
    # Without InlineCompletionOptions pygls does not advertise inlineCompletionProvider.
    server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(text_document_inline_completion)
    server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())(text_document_completion)
    server.command(ACCEPTED_COMMAND)(santacoder_accepted)
    server.feature(STATS_REQUEST)(santacoder_stats)
    server.feature(DOCUMENT_STATE_REQUEST)(santacoder_document_state)
    server.feature(types.SHUTDOWN)(shutdown)
    return server


class ClientLogHandler(logging.Handler):
    """Forwards log records to the client as ``window/logMessage`` once it is initialized.
    Safe from any thread: the message is sent from the event loop."""

    _LEVELS = ((logging.ERROR, types.MessageType.Error), (logging.WARNING, types.MessageType.Warning), (logging.INFO, types.MessageType.Info))

    def __init__(self, server: SantaCoderServer, level: int = logging.INFO):
        super().__init__(level)
        self.server = server
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        loop = self.server.loop
        if loop is None or loop.is_closed():
            return
        kind = next((kind for level, kind in self._LEVELS if record.levelno >= level), types.MessageType.Log)
        params = types.LogMessageParams(type=kind, message=self.format(record))
        try:
            loop.call_soon_threadsafe(self.server.window_log_message, params)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass
