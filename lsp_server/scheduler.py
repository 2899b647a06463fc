"""Latest wins, per document: at most one live decode job per URI.

Starting a job for a URI sets the cancel flag of the one before it; an edit does the same.
The flag is a ``threading.Event`` because the decode runs in a worker thread, where the
runtime checks it between decode steps. Touched only on the event loop; no lock.
"""

from __future__ import annotations

import asyncio
import threading


class LatestWins:
    def __init__(self) -> None:
        self._jobs: dict[str, threading.Event] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def start(self, uri: str) -> threading.Event:
        """A cancel flag for a new job on ``uri``; the previous job's flag is set."""
        self.cancel(uri)
        flag = self._jobs[uri] = threading.Event()
        return flag

    def cancel(self, uri: str) -> None:
        flag = self._jobs.pop(uri, None)
        if flag is not None:
            flag.set()

    def cancel_all(self) -> None:
        for uri in list(self._jobs):
            self.cancel(uri)

    def finish(self, uri: str, flag: threading.Event) -> None:
        if self._jobs.get(uri) is flag:
            del self._jobs[uri]


async def debounce(flag: threading.Event, delay_ms: float) -> bool:
    """Wait ``delay_ms``; ``False`` if the job was superseded meanwhile (polled every 5 ms, so
    a superseded request answers promptly)."""
    remaining = delay_ms / 1000
    while remaining > 0 and not flag.is_set():
        step = min(0.005, remaining)
        await asyncio.sleep(step)
        remaining -= step
    return not flag.is_set()
