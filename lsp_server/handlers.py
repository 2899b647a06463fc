"""Thin handlers, each named after the LSP method it serves: document sync, settings,
lifecycle, and the two completion methods (which hand the position to
``completion_request`` and shape its answer with ``completion_items``). Run on the event loop.
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

from .completion_items import completion_list, inline_completion_list
from .completion_request import suggest_at
from .server import SantaCoderServer  # at run time: pygls reads the command handler's type hints

log = logging.getLogger(__name__)


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
    answer = await suggest_at(ls, params.text_document.uri, params.position, invoked=invoked)
    return inline_completion_list(answer)


async def text_document_completion(ls: SantaCoderServer, params: types.CompletionParams) -> types.CompletionList:
    """The inline suggestion as one item, for clients without inline completion (Neovim 0.11)."""
    mode = ls.settings.completion_items
    if mode == "never" or (mode == "auto" and ls.client_has_inline_completion()):
        return types.CompletionList(is_incomplete=False, items=[])
    invoked = params.context is not None and params.context.trigger_kind == types.CompletionTriggerKind.Invoked
    answer = await suggest_at(ls, params.text_document.uri, params.position, invoked=invoked)
    if answer is None or not answer[0].text:
        return types.CompletionList(is_incomplete=True, items=[])
    document = ls.documents.get(params.text_document.uri)
    line = document.line_text(answer[1].line) if document is not None else ""
    return completion_list(answer, line, ls.client_has_snippets())


def santacoder_accepted(ls: SantaCoderServer, *args: Any) -> None:
    """The ``santacoder.accepted`` command that every item carries: the user took it."""
    if args and isinstance(args[0], str):
        ls.stats.accepted(args[0])


def shutdown(ls: SantaCoderServer, params: Any) -> None:
    ls.completer.lanes.supersede_all()
    log.info("%s", ls.stats.log_line())
    ls.host.close()
