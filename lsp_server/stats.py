"""Counters and latency percentiles, answered through ``santacoder/stats`` and logged.

Acceptance comes from what the client tells: an item's command (``santacoder.accepted``) runs
when the user accepts it. LSP has no dismissal message, so a suggestion counts as dismissed
when the next answer for its document is a different suggestion (typing through it keeps it
alive) or the document closes; an acceptance that arrives after that moves it back.
Touched only on the event loop; no lock.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any

LATENCY_WINDOW = 1000  # the percentiles cover the last this-many requests
_RECENT_IDS = 256


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _summary(values: deque[float]) -> dict[str, float]:
    data = list(values)
    return {"count": len(data), "p50": round(percentile(data, 0.5), 2), "p95": round(percentile(data, 0.95), 2)}


class ServerStats:
    def __init__(self) -> None:
        # requests, modelCalls, exactCacheHits, typedThroughHits, cancelled, stale, empty,
        # notReady, disabled, errors (outOfMemory: those of them the runtime gave up on for
        # lack of memory, after its one shorter retry), shown, accepted, dismissed;
        # generatedTokens, promptTokens, reusedPromptTokens: summed over the model's answers
        self.counts: Counter[str] = Counter()
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.model_latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._outstanding: dict[str, str] = {}  # uri -> id of the suggestion on screen
        self._dismissed: deque[str] = deque(maxlen=_RECENT_IDS)
        self._accepted: deque[str] = deque(maxlen=_RECENT_IDS)

    def count(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def record_latency(self, total_ms: float, model_ms: float | None = None) -> None:
        self.latency_ms.append(total_ms)
        if model_ms is not None:
            self.model_latency_ms.append(model_ms)

    def answered(self, uri: str, suggestion_id: str | None) -> None:
        """The client got ``suggestion_id`` (None: nothing) for ``uri``."""
        previous = self._outstanding.pop(uri, None)
        if previous is not None and previous != suggestion_id:
            self.counts["dismissed"] += 1
            self._dismissed.append(previous)
        if suggestion_id is not None:
            if previous != suggestion_id:
                self.counts["shown"] += 1
            self._outstanding[uri] = suggestion_id

    def closed(self, uri: str) -> None:
        self.answered(uri, None)

    def accepted(self, suggestion_id: str) -> None:
        if suggestion_id in self._accepted:
            return  # counted already (a client may run the command for every partial accept)
        self._accepted.append(suggestion_id)
        self.counts["accepted"] += 1
        if suggestion_id in self._dismissed:
            self._dismissed.remove(suggestion_id)
            self.counts["dismissed"] -= 1
        for uri, outstanding in list(self._outstanding.items()):
            if outstanding == suggestion_id:
                del self._outstanding[uri]

    def snapshot(self) -> dict[str, Any]:
        names = ("requests", "modelCalls", "exactCacheHits", "typedThroughHits", "cancelled", "stale", "empty",
                 "notReady", "disabled", "errors", "outOfMemory", "superseded", "shown", "accepted", "dismissed",
                 "generatedTokens", "promptTokens", "reusedPromptTokens")  # fmt: skip
        out: dict[str, Any] = {name: self.counts[name] for name in names}
        shown = self.counts["shown"]
        out["acceptanceRate"] = round(self.counts["accepted"] / shown, 4) if shown else 0.0
        out["latencyMs"] = _summary(self.latency_ms)
        out["modelLatencyMs"] = _summary(self.model_latency_ms)
        return out

    def log_line(self) -> str:
        s = self.snapshot()
        return (
            f"stats: requests={s['requests']} model_calls={s['modelCalls']} cache_hits={s['exactCacheHits']}"
            f"+{s['typedThroughHits']} cancelled={s['cancelled']} stale={s['stale']} shown={s['shown']}"
            f" accepted={s['accepted']} dismissed={s['dismissed']} latency_p50={s['latencyMs']['p50']}ms"
            f" p95={s['latencyMs']['p95']}ms"
        )
