"""Per-call state of the remote engine: the watchdog that cuts exchanges on cancel or deadline,
and the decoding of streamed token ids (or text pieces) into text under the stop rules.

Split from ``openai_engine`` so that module holds the engine and its server bookkeeping only.
``Decoding.push_id`` mirrors the in-process loop (``engine._Run.push``): healing tokens that
add no text are not capped, the stop callback sees the whole text after every token.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from .api import CancelFlag, CompletionRequest, StopCallback, StopReason
from .openai_http import Cutter
from .prompt import HealingGuide, Prompt
from .vocabulary import TextStream, TokenTable

WATCH_INTERVAL_S = 0.005


def now_ms() -> float:
    return time.perf_counter() * 1000.0


# -- watching calls: cancel flags and deadlines -----------------------------------------------


class Watchdog:
    """One daemon thread that cuts each watched exchange when its cancel flag is set or its
    deadline passes (polled every 5 ms while any is watched; asleep otherwise)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watched: dict[Cutter, tuple[CancelFlag | None, float]] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def watch(self, cutter: Cutter, cancel: CancelFlag | None, deadline_ms: float) -> Iterator[None]:
        with self._cond:
            if self._closed:
                cutter.cut("closed")
            self._watched[cutter] = (cancel, deadline_ms)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="openai-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._watched.pop(cutter, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._watched and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                watched = list(self._watched.items())
            now = now_ms()
            for cutter, (cancel, deadline_ms) in watched:
                if cancel is not None and cancel.is_set():
                    cutter.cut("cancelled")
                elif now > deadline_ms:
                    cutter.cut("deadline")
            time.sleep(WATCH_INTERVAL_S)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for cutter in self._watched:
                cutter.cut("closed")
            self._cond.notify()


# -- one completion's decoded text --------------------------------------------------------------


class Decoding:
    """Token ids (or, from servers that send no ids, text pieces) -> text, with the stop rules
    applied after every token as in the in-process decode loop (``engine._Run.push``)."""

    def __init__(self, table: TokenTable, request: CompletionRequest, prompt: Prompt, stop: StopCallback | None, context_tokens: int):
        self._table = table
        self._stream = TextStream(table, skip_bytes=len(prompt.healed))
        # Text pieces (a server without token ids): the healed text should come back first.
        self._healed_text: str | None = prompt.healed.decode("utf-8", errors="replace") or None
        self._raw = ""
        self._text_start = 0
        self.healing = HealingGuide(table, prompt.healed)
        self._request = request
        self._prompt = prompt
        self._stop = stop
        self._context_tokens = context_tokens
        self.ids: list[int] = []  # generated (non-special) tokens
        self.logprobs: list[float] = []  # per generated token, the server's raw (unconstrained) log-probability
        self.text_ends: list[int] = []
        self.healing_tokens = 0  # generated while the healed bytes were being re-produced (not capped)
        self.pieces = 0  # text pieces taken from a server that sent no token ids
        self.text = ""
        self.reason: StopReason | None = None
        self.first_token_ms: float | None = None
        self.cached_tokens: int | None = None  # the server's prefix-cache hit for the prompt
        self.phase_cached: int | None = None  # the same for the request streaming now

    @property
    def generated(self) -> int:
        return len(self.ids) + self.pieces

    def room(self) -> int:
        """How many more tokens the next request may ask for: the cap (healing tokens aside)
        and the context (vLLM refuses a prompt plus max_tokens beyond its max_model_len)."""
        cap = self._prompt.max_new_tokens - (self.generated - self.healing_tokens)
        return min(cap, self._context_tokens - len(self._prompt.token_ids) - self.generated)

    def push_id(self, token: int, logprob: float) -> None:
        if self.reason is not None:
            return
        self._started()
        if token in self._table.stop_ids or not 0 <= token < self._table.size:
            if not self._request.ignore_eos:
                self.reason = StopReason.EOS
            return  # with ignore_eos (benchmarks) special ids add nothing, as in-process never samples them
        healing = not self.healing.done
        self.healing.advance(token)
        self.ids.append(token)
        self.logprobs.append(logprob)
        shown = len(self.text)
        text = self._stream.push(token)
        if healing and not text:
            self.healing_tokens += 1
        floor = self._request.min_token_logprob
        if floor is not None and logprob < floor and len(text) > shown:
            # As in-process: the suggestion ends before the first unlikely token.
            self.text, self.reason = text[:shown], StopReason.LOW_CONFIDENCE
            self.text_ends.append(shown)
            return
        self._after_token(text)

    def push_text(self, piece: str) -> None:
        if self.reason is not None or not piece:
            return
        self._started()
        self.pieces += 1
        self._raw += piece
        healed = self._healed_text
        if healed is not None:
            if healed.startswith(self._raw) and len(self._raw) < len(healed):
                return  # still re-producing the healed text
            # Such servers may ignore allowed_token_ids: text that does not start with the
            # healed text is kept whole rather than cut at a wrong place.
            self._text_start = len(healed) if self._raw.startswith(healed) else 0
            self._healed_text = None
        self._after_token(self._raw[self._text_start :])

    def finished(self, finish_reason: Any, last_phase: bool) -> None:
        """The stream ended by itself: EOS, or the end of one constrained healing step."""
        if self.reason is not None:
            return
        if finish_reason == "length" and not last_phase:
            return  # a one-token healing request ended; the next one follows
        if finish_reason == "length":
            self.reason = StopReason.MAX_TOKENS if self._cap_reached() else StopReason.CONTEXT_FULL
        else:
            self.reason = StopReason.EOS

    def _cap_reached(self) -> bool:
        return self.generated - self.healing_tokens >= self._prompt.max_new_tokens

    def _started(self) -> None:
        if self.first_token_ms is None:
            self.first_token_ms = now_ms()

    def _after_token(self, text: str) -> None:
        if self._stop is not None:
            cut = self._stop(text)
            if cut is not None:
                text, self.reason = text[:cut], StopReason.CALLBACK
        self.text = text
        self.text_ends.append(len(text))
        if self.reason is None and self._cap_reached():
            self.reason = StopReason.MAX_TOKENS
        elif self.reason is None and self.room() <= 0:
            self.reason = StopReason.CONTEXT_FULL
