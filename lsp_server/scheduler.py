"""Latest wins, per document: the one place that decides which request is the newest and
whether a result may still be shown.

Every completion request takes a ``Ticket`` for its document as it arrives. The ticket is
superseded (its flag set) by the next request for that document, by an edit of it, by its
close, and by a model reload. A superseded ticket's decode stops at its next step (the runtime
checks the flag between decode steps, in the worker thread: hence a ``threading.Event``), and
its result is never shown: an edit supersedes, so "still current" also means "computed for the
document's latest version". Touched only on the event loop; no lock.
"""

from __future__ import annotations

import asyncio
import threading


class Ticket:
    """One request's claim on its document. ``flag`` is the decode's cancel flag."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.flag = threading.Event()

    @property
    def current(self) -> bool:
        """Nothing newer came for this document (no request, edit, close or reload)."""
        return not self.flag.is_set()


class LatestWins:
    def __init__(self) -> None:
        self._tickets: dict[str, Ticket] = {}

    def __len__(self) -> int:
        """Documents with a request still in flight."""
        return len(self._tickets)

    def begin(self, uri: str) -> Ticket:
        """A ticket for a new request on ``uri``; the previous one is superseded."""
        self.supersede(uri)
        ticket = self._tickets[uri] = Ticket(uri)
        return ticket

    async def settle(self, ticket: Ticket) -> bool:
        """Yield once, then say whether ``ticket`` is still current.

        The transport hands every message already read to its handler before any handler task
        runs, so after one yield all requests of a burst hold their tickets and the older ones
        answer empty without building a context window or touching the model (the client has
        moved on from them). Measured with ``benchmarks/load_replay.py``."""
        await asyncio.sleep(0)
        return ticket.current

    def supersede(self, uri: str) -> None:
        """Something newer happened to ``uri`` (a request, an edit, a close)."""
        ticket = self._tickets.pop(uri, None)
        if ticket is not None:
            ticket.flag.set()

    def supersede_all(self) -> None:
        """The model changes: nothing computed so far may be shown."""
        for uri in list(self._tickets):
            self.supersede(uri)

    def finish(self, ticket: Ticket) -> None:
        """The request answered; forget its ticket if it is still the document's newest."""
        if self._tickets.get(ticket.uri) is ticket:
            del self._tickets[ticket.uri]


async def debounce(ticket: Ticket, delay_ms: float) -> bool:
    """Wait ``delay_ms``; ``False`` if the ticket was superseded meanwhile (polled every 5 ms,
    so a superseded request answers promptly)."""
    remaining = delay_ms / 1000
    while remaining > 0 and ticket.current:
        step = min(0.005, remaining)
        await asyncio.sleep(step)
        remaining -= step
    return ticket.current
