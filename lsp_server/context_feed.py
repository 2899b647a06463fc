"""Feeds the context store from the server's document events and the workspace folders, and
turns a planned request into its extra context (``reserve_tokens``/``block_for``).

Runs on the event loop. Reading imported workspace files is the one blocking part: it runs in
a worker thread, and its results are added to the store back on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from lsprotocol import types

from .context_store import ContextBlock, ContextStore
from .languages import language_id_for_path
from .workspace_files import has_imports, path_of_uri, read_imported_files, workspace_roots

log = logging.getLogger(__name__)

IMPORT_RESCAN_DELAY_S = 1.0  # an edit that touches an import line rescans imports after this pause
_IMPORT_WORDS = ("import", "require", "include")  # an edit with one of these may change the imports
MAX_CONTEXT_SHARE = 4  # extra context takes at most 1/4 of the prompt budget


def reserve_tokens(store: ContextStore, uri: str, setting_tokens: int, prompt_tokens: int) -> int:
    """Tokens taken out of the windows' budget for the block: the setting (at most a quarter of
    the runtime's prompt budget, so the runtime never has to drop it) when the store has
    anything for this document, else 0. It does not depend on the chosen block's size, so the
    windows do not move when the block changes."""
    if setting_tokens <= 0 or not store.has_candidates(uri):
        return 0
    return min(setting_tokens, prompt_tokens // MAX_CONTEXT_SHARE)


def block_for(
    store: ContextStore, uri: str, text: str, offset: int, window_prefix: str, window_suffix: str, window_start: int,
    budget_tokens: int, count_tokens: Callable[[str], int],
) -> ContextBlock:  # fmt: skip
    if budget_tokens <= 0:
        return ContextBlock()
    cursor_line = text.count("\n", 0, offset)
    return store.choose(uri, window_prefix + window_suffix, window_start, cursor_line, budget_tokens, count_tokens)


class ContextFeed:
    """``read_open(uri)`` is an open document's current text (the server's document store)."""

    def __init__(self, store: ContextStore, read_open: Callable[[str], str | None]):
        self.store = store
        store.read_open = read_open
        self.read_open = read_open
        self.roots: tuple[Path, ...] = ()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._rescans: dict[str, asyncio.TimerHandle] = {}

    def set_workspace(self, root_uri: str | None, root_path: str | None, folders: Sequence[types.WorkspaceFolder] | None) -> None:
        self.roots = workspace_roots(root_uri, root_path, [folder.uri for folder in folders or ()])
        self.store.roots = tuple(str(root) for root in self.roots)

    def opened(self, item: types.TextDocumentItem) -> None:
        self.store.opened(item.uri, item.language_id, item.text)
        self._scan_imports(item.uri, item.language_id, item.text)

    def changed(self, params: types.DidChangeTextDocumentParams) -> None:
        uri, line, touches_import = params.text_document.uri, None, False
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                line = change.range.start.line
            touches_import = touches_import or any(word in change.text for word in _IMPORT_WORDS)
        self.store.changed(uri, line)
        if touches_import:
            self._schedule_rescan(uri)

    def closed(self, uri: str, text: str | None) -> None:
        handle = self._rescans.pop(uri, None)
        if handle is not None:
            handle.cancel()
        self.store.closed(uri, text)

    def _schedule_rescan(self, uri: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        handle = self._rescans.pop(uri, None)
        if handle is not None:
            handle.cancel()

        def rescan() -> None:
            self._rescans.pop(uri, None)
            text, language = self.read_open(uri), self.store.language_of(uri)
            if text is not None and language is not None:
                self._scan_imports(uri, language, text)

        self._rescans[uri] = loop.call_later(IMPORT_RESCAN_DELAY_S, rescan)

    def _scan_imports(self, uri: str, language_id: str, text: str) -> None:
        path = path_of_uri(uri)
        if not self.roots or path is None or not has_imports(text, language_id):
            return
        try:
            task = asyncio.ensure_future(self._add_imports(path, text, language_id))
        except RuntimeError:  # no event loop (unit tests of the handlers)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add_imports(self, path: Path, text: str, language_id: str) -> None:
        try:
            files = await asyncio.to_thread(read_imported_files, path, text, self.roots, language_id=language_id)
        except Exception:  # context is a nicety: never let it fail a request
            log.exception("reading the files %s imports failed", path)
            return
        for file_path, content in files:  # a header of a C++ file is "c", a .js file of a .ts one "javascript"
            if self.store.add_file(file_path.as_uri(), language_id_for_path(file_path.name) or language_id, content):
                log.debug("context: added %s (imported by %s)", file_path, path.name)

    async def settle(self) -> None:
        """Wait for the import reads in flight (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
