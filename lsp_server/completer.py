"""One suggestion for one cursor: caches, context windows, the decode, the stop rules.

Knows no LSP types, so the server and the headless command share it. Runs on the event loop;
only ``engine.complete`` runs in a worker thread, with the request's ``Ticket`` flag (from
``LatestWins``, the one place that decides staleness) as its cancel flag. Order of answers:
typed-through remainder, exact-cache hit, then the model (after the debounce). A model
answer whose ticket was superseded meanwhile (a newer request, an edit) is dropped, and one
whose tokens the model itself found unlikely (the confidence gate) is not shown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import dataclass, replace
from typing import Hashable, Literal

from model_runtime.api import CompletionOOMError, CompletionRequest, CompletionResult, CompletionServerError, StopReason

from .completion_cache import CompletionCache, ShownSuggestion
from .context import CursorShape, Mode, TokenCounter, Windows, describe_cursor, extract_windows, plan_budget
from .context_feed import block_for, reserve_tokens
from .context_store import ContextStore
from .engine_adapter import CompletionEngine
from .engine_host import EngineHost
from .scheduler import LatestWins, Ticket, debounce
from .settings import Settings
from .stats import ServerStats
from .stop_rules import StopRules

log = logging.getLogger(__name__)

Source = Literal["model", "exact_cache", "typed_through", "none"]
EmptyReason = Literal["", "not_ready", "cancelled", "stale", "empty", "error", "low_confidence"]


@dataclass(frozen=True)
class Suggestion:
    text: str  # to insert at the cursor, with the document's line breaks; "" for nothing
    source: Source = "none"
    reason: EmptyReason = ""
    suggestion_id: str | None = None
    mode: Mode | None = None
    windows: Windows | None = None
    result: CompletionResult | None = None  # the runtime's answer, when the model ran
    latency_ms: float = 0.0
    document_version: int | None = None  # set by the server: the version the request was for
    confidence: float | None = None  # geometric-mean probability of the shown tokens (model answers)


@dataclass(frozen=True)
class _Plan:
    """What the model would be asked: the cursor's shape, the windows, the cap, the cache key."""

    shape: CursorShape
    windows: Windows
    max_new_tokens: int
    key: Hashable
    model_key: Hashable
    language_id: str
    extra_context: str = ""  # the block of other files' chunks (context_store), before the windows


class Completer:
    def __init__(self, host: EngineHost, stats: ServerStats):
        self.host = host
        self.stats = stats
        self.cache = CompletionCache()
        self.lanes = LatestWins()
        self._counter: tuple[CompletionEngine, TokenCounter] | None = None
        self.context = ContextStore()  # chunks of other files; fed by the server (context_feed)

    def forget(self, uri: str) -> None:
        """The document closed: cancel its decode and drop its typed-through state."""
        self.lanes.supersede(uri)
        self.cache.forget(uri)

    def _token_counter(self, engine: CompletionEngine) -> TokenCounter:
        if self._counter is None or self._counter[0] is not engine:
            self._counter = (engine, TokenCounter(engine.count_tokens))
        return self._counter[1]

    async def suggest(
        self,
        uri: str,
        text: str,
        offset: int,
        settings: Settings,
        *,
        eol: str = "\n",
        language_id: str = "",
        ticket: Ticket | None = None,
        base: int = 0,
        document_chars: int | None = None,
    ) -> Suggestion:
        """The suggestion at ``offset`` of ``text`` (document ``uri``). ``ticket``: the request's
        claim from ``self.lanes.begin(uri)`` (taken here when not given). Never raises except
        ``CancelledError`` (``$/cancelRequest``), which also cancels the decode. ``text`` may
        be an excerpt of the document (``Document.excerpt``, reaching ``window_reach_chars``
        around the cursor) that starts at document offset ``base``, of a document
        ``document_chars`` long: then a keystroke costs the excerpt, not the document."""
        ticket = ticket or self.lanes.begin(uri)
        try:
            return await self._suggest(uri, text, offset, settings, eol, language_id, ticket, base, document_chars)
        finally:
            self.lanes.finish(ticket)

    async def _suggest(
        self, uri: str, text: str, offset: int, settings: Settings, eol: str, language_id: str, ticket: Ticket,
        base: int, document_chars: int | None,
    ) -> Suggestion:  # fmt: skip
        started = time.perf_counter()
        self.stats.count("requests")
        engine = self.host.engine
        if engine is None:
            self.stats.count("notReady")
            return Suggestion("", reason="not_ready")
        model_key: Hashable = (self.host.options, settings.fim_order)
        place = {"base": base, "document_chars": len(text) if document_chars is None else document_chars}
        hit = self.cache.typed_through(uri, text, offset, model_key, **place)
        if hit is not None:
            shown, rest = hit
            self.stats.count("typedThroughHits")
            self.cache.remember(uri, ShownSuggestion(shown.suggestion_id, text[:offset], text[offset:], rest, model_key, **place))
            return self._timed(Suggestion(rest, "typed_through", suggestion_id=shown.suggestion_id), started)
        plan = self._plan(engine, text, offset, eol, settings, model_key, language_id, base, uri)
        cached = self.cache.get(plan.key)
        if cached is not None:
            self.stats.count("exactCacheHits")
            return self._timed(self._show(uri, text, offset, cached, "exact_cache", plan, place), started)
        return await self._ask_model(uri, engine, text, offset, plan, settings, ticket, started, place)

    def _plan(
        self, engine: CompletionEngine, text: str, offset: int, eol: str, settings: Settings, model_key: Hashable,
        language_id: str, base: int = 0, uri: str = "",
    ) -> _Plan:  # fmt: skip
        shape = describe_cursor(text, offset, eol)
        counter = self._token_counter(engine)
        prompt_tokens = engine.info.prompt_budget(settings.budget_new_tokens()).prompt_tokens
        # Extra context (issue 18): its reserve comes out of the windows' budget, then its block is chosen for them.
        reserve = reserve_tokens(self.context, uri, settings.extra_context_tokens, prompt_tokens)
        budget = plan_budget(prompt_tokens, settings.prefix_ratio, reserve)
        windows = extract_windows(text, offset, budget, counter, base)
        extra = block_for(self.context, uri, text, offset, windows.prefix, windows.suffix, windows.prefix_start - base, reserve, counter.count).text
        max_new = settings.max_new_tokens if shape.mode == "multi" else settings.max_new_tokens_single_line
        key = (model_key, extra, windows.prefix, windows.suffix, shape, max_new, language_id, settings.min_confidence, settings.min_token_confidence)
        return _Plan(shape, windows, max_new, key, model_key, language_id, extra)

    async def _ask_model(
        self,
        uri: str,
        engine: CompletionEngine,
        text: str,
        offset: int,
        plan: _Plan,
        settings: Settings,
        ticket: Ticket,
        started: float,
        place: dict[str, int],
    ) -> Suggestion:
        request = CompletionRequest(
            prefix=plan.windows.prefix,
            suffix=plan.windows.suffix,
            extra_context=plan.extra_context,
            max_new_tokens=plan.max_new_tokens,
            fim_order=settings.fim_order,  # type: ignore[arg-type]
            cache_key=uri,
            min_token_logprob=math.log(settings.min_token_confidence) if settings.min_token_confidence > 0 else None,
        )
        rules = StopRules(plan.shape, plan.language_id)
        result = await self._decode(uri, engine, request, rules, settings.debounce_ms, ticket)
        empty = Suggestion("", mode=plan.shape.mode, windows=plan.windows)
        if isinstance(result, Exception):
            self.stats.count("errors")
            if isinstance(result, CompletionOOMError):
                self.stats.count("outOfMemory")
            return replace(empty, reason="error")
        if result is None or result.stop_reason == StopReason.CANCELLED:
            self.stats.count("cancelled")
            return replace(empty, reason="cancelled", result=result)
        self.stats.record_latency((time.perf_counter() - started) * 1000, result.stats.prefill_ms + result.stats.decode_ms)
        finished = rules.finish(result.text, truncated=result.stop_reason not in (StopReason.EOS, StopReason.CALLBACK))
        confidence = _confidence(result, finished)
        gated = bool(finished) and confidence is not None and confidence < settings.min_confidence
        completion = "" if gated else finished.replace("\n", plan.shape.eol)
        if result.stop_reason != StopReason.DEADLINE:
            self.cache.put(plan.key, completion)
        if not ticket.current:
            self.stats.count("stale")
            return replace(empty, reason="stale", result=result)
        if result.stop_reason == StopReason.LOW_CONFIDENCE:
            # The token floor ended it: nothing left counts as hidden, a shorter text as cut.
            self.stats.count("lowConfidence" if not finished else "cutAtLowConfidence")
        if gated:
            self.stats.count("lowConfidence")
            self.cache.forget(uri)
            return self._timed(replace(empty, reason="low_confidence", result=result, confidence=confidence), started, record=False)
        suggestion = self._show(uri, text, offset, completion, "model", plan, place)
        return self._timed(replace(suggestion, result=result, confidence=confidence), started, record=False)

    async def _decode(
        self, uri: str, engine: CompletionEngine, request: CompletionRequest, rules: StopRules, debounce_ms: float, ticket: Ticket
    ) -> CompletionResult | Exception | None:
        """The model's answer; ``None`` if a newer request or an edit came first."""
        try:
            if not await debounce(ticket, debounce_ms):
                return None
            self.stats.count("modelCalls")
            result = await asyncio.to_thread(engine.complete, request, stop=rules.check, cancel=ticket.flag)
            self.stats.count("generatedTokens", result.stats.generated_tokens)
            self.stats.count("promptTokens", result.stats.prompt_tokens)
            self.stats.count("reusedPromptTokens", result.stats.reused_tokens)
            return result
        except asyncio.CancelledError:
            ticket.flag.set()  # $/cancelRequest: the worker thread stops at its next decode step
            self.stats.count("cancelled")
            raise
        except CompletionServerError as error:
            log.debug("completion failed for %s: %s", uri, error)  # the engine logged it, once per run of the same problem
            return error
        except CompletionOOMError as error:
            # Expected under memory pressure, and the runtime has retried already: one line, no traceback.
            log.warning("completion failed for %s: %s", uri, error)
            return error
        except Exception as error:  # a failed completion is logged, never fatal
            log.exception("completion failed for %s", uri)
            return error

    def _show(self, uri: str, text: str, offset: int, completion: str, source: Source, plan: _Plan, place: dict[str, int]) -> Suggestion:
        if not completion:
            self.stats.count("empty")
            self.cache.forget(uri)
            return Suggestion("", source, "empty", mode=plan.shape.mode, windows=plan.windows)
        suggestion_id = uuid.uuid4().hex[:16]
        self.cache.remember(uri, ShownSuggestion(suggestion_id, text[:offset], text[offset:], completion, plan.model_key, **place))
        return Suggestion(completion, source, suggestion_id=suggestion_id, mode=plan.shape.mode, windows=plan.windows)

    def _timed(self, suggestion: Suggestion, started: float, record: bool = True) -> Suggestion:
        latency_ms = (time.perf_counter() - started) * 1000
        if record:
            self.stats.record_latency(latency_ms)
        return replace(suggestion, latency_ms=latency_ms)


def _confidence(result: CompletionResult, shown: str) -> float | None:
    """Geometric-mean probability of the tokens that produced ``shown`` (``None``: no scores)."""
    scores = result.confidence(len(shown))
    return math.exp(scores[0]) if scores is not None else None
