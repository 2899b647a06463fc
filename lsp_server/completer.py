"""One suggestion for one cursor: caches, context windows, the decode, the stop rules.

Knows no LSP types, so the server and the headless command share it. Runs on the event loop;
only ``engine.complete`` runs in a worker thread, with a cancel flag owned by ``LatestWins``.
Order of answers: typed-through remainder, exact-cache hit, then the model (after the
debounce). A model answer for a document version that is no longer current is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Callable, Hashable, Literal

from model_runtime.api import CompletionOOMError, CompletionRequest, CompletionResult, CompletionServerError, StopReason

from .completion_cache import CompletionCache, ShownSuggestion
from .context import CursorShape, Mode, TokenCounter, Windows, describe_cursor, extract_windows, plan_budget
from .engine_adapter import CompletionEngine
from .engine_host import EngineHost
from .scheduler import LatestWins, debounce
from .settings import Settings
from .stats import ServerStats
from .stop_rules import StopRules

log = logging.getLogger(__name__)

Source = Literal["model", "exact_cache", "typed_through", "none"]
EmptyReason = Literal["", "not_ready", "cancelled", "stale", "empty", "error"]


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


@dataclass(frozen=True)
class _Plan:
    """What the model would be asked: the cursor's shape, the windows, the cap, the cache key."""

    shape: CursorShape
    windows: Windows
    max_new_tokens: int
    key: Hashable
    model_key: Hashable


class Completer:
    def __init__(self, host: EngineHost, stats: ServerStats):
        self.host = host
        self.stats = stats
        self.cache = CompletionCache()
        self.lanes = LatestWins()
        self._counter: tuple[CompletionEngine, TokenCounter] | None = None

    def forget(self, uri: str) -> None:
        """The document closed: cancel its decode and drop its typed-through state."""
        self.lanes.cancel(uri)
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
        is_current: Callable[[], bool] = lambda: True,
    ) -> Suggestion:
        """The suggestion at ``offset`` of ``text`` (document ``uri``). Never raises except
        ``CancelledError`` (``$/cancelRequest``), which also cancels the decode."""
        started = time.perf_counter()
        self.stats.count("requests")
        engine = self.host.engine
        if engine is None:
            self.stats.count("notReady")
            return Suggestion("", reason="not_ready")
        model_key: Hashable = (self.host.options, settings.fim_order)
        hit = self.cache.typed_through(uri, text, offset, model_key)
        if hit is not None:
            self.lanes.cancel(uri)
            shown, rest = hit
            self.stats.count("typedThroughHits")
            self.cache.remember(uri, ShownSuggestion(shown.suggestion_id, text[:offset], text[offset:], rest, model_key))
            return self._timed(Suggestion(rest, "typed_through", suggestion_id=shown.suggestion_id), started)
        plan = self._plan(engine, text, offset, eol, settings, model_key)
        cached = self.cache.get(plan.key)
        if cached is not None:
            self.lanes.cancel(uri)
            self.stats.count("exactCacheHits")
            return self._timed(self._show(uri, text, offset, cached, "exact_cache", plan), started)
        return await self._ask_model(uri, engine, text, offset, plan, settings, is_current, started)

    def _plan(self, engine: CompletionEngine, text: str, offset: int, eol: str, settings: Settings, model_key: Hashable) -> _Plan:
        shape = describe_cursor(text, offset, eol)
        budget = plan_budget(engine.info.prompt_budget(settings.budget_new_tokens()).prompt_tokens, settings.prefix_ratio)
        windows = extract_windows(text, offset, budget, self._token_counter(engine))
        max_new = settings.max_new_tokens if shape.mode == "multi" else settings.max_new_tokens_single_line
        return _Plan(shape, windows, max_new, (model_key, windows.prefix, windows.suffix, shape, max_new), model_key)

    async def _ask_model(
        self,
        uri: str,
        engine: CompletionEngine,
        text: str,
        offset: int,
        plan: _Plan,
        settings: Settings,
        is_current: Callable[[], bool],
        started: float,
    ) -> Suggestion:
        request = CompletionRequest(
            prefix=plan.windows.prefix,
            suffix=plan.windows.suffix,
            max_new_tokens=plan.max_new_tokens,
            fim_order=settings.fim_order,  # type: ignore[arg-type]
            cache_key=uri,
        )
        rules = StopRules(plan.shape)
        result = await self._decode(uri, engine, request, rules, settings.debounce_ms)
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
        completion = rules.finish(result.text).replace("\n", plan.shape.eol)
        if result.stop_reason != StopReason.DEADLINE:
            self.cache.put(plan.key, completion)
        if not is_current():
            self.stats.count("stale")
            return replace(empty, reason="stale", result=result)
        suggestion = self._show(uri, text, offset, completion, "model", plan)
        return self._timed(replace(suggestion, result=result), started, record=False)

    async def _decode(
        self, uri: str, engine: CompletionEngine, request: CompletionRequest, rules: StopRules, debounce_ms: float
    ) -> CompletionResult | Exception | None:
        """The model's answer; ``None`` if a newer request or an edit came first."""
        flag = self.lanes.start(uri)
        try:
            if not await debounce(flag, debounce_ms):
                return None
            self.stats.count("modelCalls")
            result = await asyncio.to_thread(engine.complete, request, stop=rules.check, cancel=flag)
            self.stats.count("generatedTokens", result.stats.generated_tokens)
            self.stats.count("promptTokens", result.stats.prompt_tokens)
            self.stats.count("reusedPromptTokens", result.stats.reused_tokens)
            return result
        except asyncio.CancelledError:
            flag.set()  # $/cancelRequest: the worker thread stops at its next decode step
            self.stats.count("cancelled")
            raise
        except CompletionServerError as error:
            log.debug("completion failed for %s: %s", uri, error)  # the engine logged it, once per run of the same problem
            return error
        except CompletionOOMError as error:
            # Expected under memory pressure, and the runtime has retried already: one line, no traceback.
            log.warning("completion failed for %s: %s", uri, error)
            return error
        except Exception as error:  # noqa: BLE001 - a failed completion is logged, never fatal
            log.exception("completion failed for %s", uri)
            return error
        finally:
            self.lanes.finish(uri, flag)

    def _show(self, uri: str, text: str, offset: int, completion: str, source: Source, plan: _Plan) -> Suggestion:
        if not completion:
            self.stats.count("empty")
            self.cache.forget(uri)
            return Suggestion("", source, "empty", mode=plan.shape.mode, windows=plan.windows)
        suggestion_id = uuid.uuid4().hex[:16]
        self.cache.remember(uri, ShownSuggestion(suggestion_id, text[:offset], text[offset:], completion, plan.model_key))
        return Suggestion(completion, source, suggestion_id=suggestion_id, mode=plan.shape.mode, windows=plan.windows)

    def _timed(self, suggestion: Suggestion, started: float, record: bool = True) -> Suggestion:
        latency_ms = (time.perf_counter() - started) * 1000
        if record:
            self.stats.record_latency(latency_ms)
        return replace(suggestion, latency_ms=latency_ms)
