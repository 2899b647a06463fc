"""The language server's state, and ``create_server``, which registers every handler.

State lives on ``SantaCoderServer`` and is touched only on the event loop; worker threads
(model load, decode) reach it through ``loop.call_soon_threadsafe``. Nothing here writes to
stdout: logs go to stderr (``logging``) and to the client (``window/logMessage``).

The layers of ``lsp_server``, outermost first: ``transport`` (framing, stdio and TCP) ->
``protocol`` (pygls' protocol, hardened; its private parts listed in ``pygls_internals``) ->
``handlers`` (one thin function per LSP method) -> ``completion_request`` (an LSP position to
a ``Suggestion``), with ``completion_items`` shaping the answer -> ``completer`` (the
completion pipeline) -> its policies (``scheduler``, ``completion_cache``, ``context``,
``context_feed``, ``stop_rules``) -> ``engine_host`` and ``engine_adapter`` (the model).
Beside them: ``model_load`` (loading with ``$/progress``), ``introspection``
(``santacoder/stats``, ``santacoder/documentState``) and ``client_log``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from . import __version__
from .completer import Completer
from .completion_items import ACCEPTED_COMMAND
from .context_feed import ContextFeed
from .documents import DocumentStore, Encoding
from .engine_adapter import load_completion_engine
from .engine_host import EngineHost, Loader
from .model_load import load_model
from .protocol import SantaCoderProtocol
from .settings import Settings, parse_settings, problems_message
from .stats import ServerStats

log = logging.getLogger(__name__)


class SantaCoderServer(LanguageServer):
    protocol: SantaCoderProtocol  # made by pygls from ``protocol_cls``

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
        return cast(Encoding, value) if value in ("utf-8", "utf-16", "utf-32") else "utf-16"

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


def create_server(settings: Settings = Settings(), loader: Loader = load_completion_engine) -> SantaCoderServer:
    """A server with every handler registered. ``settings`` are the defaults that the
    client's ``initializationOptions`` and later configuration changes start from."""
    # Imported here: ``handlers`` imports this module, since pygls evaluates a command
    # handler's type hints (``santacoder_accepted``'s ``ls: SantaCoderServer``) when it runs.
    from . import handlers, introspection

    server = SantaCoderServer(settings, loader)
    server.feature(types.INITIALIZE)(handlers.initialize)
    server.feature(types.INITIALIZED)(handlers.initialized)
    server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(handlers.workspace_did_change_configuration)
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(handlers.text_document_did_open)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(handlers.text_document_did_change)
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(handlers.text_document_did_close)
    # Without InlineCompletionOptions pygls does not advertise inlineCompletionProvider.
    server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(handlers.text_document_inline_completion)
    server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())(handlers.text_document_completion)
    server.command(ACCEPTED_COMMAND)(handlers.santacoder_accepted)
    server.feature(introspection.STATS_REQUEST)(introspection.santacoder_stats)
    server.feature(introspection.DOCUMENT_STATE_REQUEST)(introspection.santacoder_document_state)
    server.feature(types.SHUTDOWN)(handlers.shutdown)
    return server
