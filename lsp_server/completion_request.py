"""One completion request, from an LSP position to a ``Suggestion``: the request's ticket
(``scheduler.LatestWins``, which alone decides staleness), the document and its excerpt, the
language switch, the in-flight counts; then ``Completer.suggest`` does the rest.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from lsprotocol import types

from .completer import Suggestion
from .context import window_reach_chars
from .scheduler import Ticket

if TYPE_CHECKING:
    from .server import SantaCoderServer

log = logging.getLogger(__name__)

STATS_LOG_EVERY_REQUESTS = 100


async def suggest_at(
    ls: SantaCoderServer, uri: str, position: types.Position, *, invoked: bool = False
) -> tuple[Suggestion, types.Position] | None:
    """The suggestion at ``position`` of ``uri`` and the cursor it belongs at (``position``
    clamped into the document); ``None`` when the request was superseded or the document is
    not open. ``invoked``: the user asked explicitly, so there is nothing to debounce."""
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
