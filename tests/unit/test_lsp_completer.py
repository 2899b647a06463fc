"""The completion pipeline in-process, with the scripted engine: caches, latest wins, stale
versions, cancellation. (The protocol tests check the same through a real client.)"""

from __future__ import annotations

import asyncio
import math

import pytest

from lsp_server.completer import Completer
from lsp_server.engine_host import EngineHost
from lsp_server.settings import Settings
from lsp_server.stats import ServerStats
from model_runtime.api import LoadOptions
from tests.fakes import FakeEngine, Rule

SETTINGS = Settings(debounce_ms=0)
URI = "file:///work/demo.py"


async def ready_completer(engine: FakeEngine) -> Completer:
    host = EngineHost(loader=lambda options, progress: engine)
    assert await host.load(LoadOptions(model="fake")) is None
    return Completer(host, ServerStats())


async def test_requests_before_the_model_is_ready_get_nothing_at_once():
    completer = Completer(EngineHost(), ServerStats())
    suggestion = await completer.suggest(URI, "x = ", 4, SETTINGS)
    assert (suggestion.text, suggestion.reason) == ("", "not_ready")


async def test_typed_through_and_exact_hits_do_not_call_the_model():
    engine = FakeEngine(rules=[Rule("value = ", "compute(alpha)")])
    completer = await ready_completer(engine)
    text = "value = \n"
    first = await completer.suggest(URI, text, 8, SETTINGS)
    assert (first.text, first.source) == ("compute(alpha)", "model")
    typed = "value = comp\n"
    second = await completer.suggest(URI, typed, 12, SETTINGS)
    assert (second.text, second.source, second.suggestion_id) == ("ute(alpha)", "typed_through", first.suggestion_id)
    again = await completer.suggest(URI, text, 8, SETTINGS)  # back to where it was: exact cache
    assert (again.text, again.source) == ("compute(alpha)", "exact_cache")
    assert len(engine.calls) == 1
    other = await completer.suggest(URI, "value = x\n", 9, SETTINGS)  # typed something else
    assert other.source == "model" and len(engine.calls) == 2


async def test_a_newer_request_cancels_the_running_decode():
    engine = FakeEngine(rules=[Rule("a = ", "one two three four five six seven eight nine ten")], token_delay_ms=40)
    completer = await ready_completer(engine)
    slow = asyncio.ensure_future(completer.suggest(URI, "a = \n", 4, SETTINGS))
    await asyncio.sleep(0.1)
    engine.token_delay_ms = 0
    fresh = await completer.suggest(URI, "b = 1\na = \n", 10, SETTINGS)
    stale = await slow
    assert stale.reason == "cancelled" and stale.text == ""
    assert fresh.text.startswith("one two")
    assert engine.cancelled_calls == 1


async def test_task_cancellation_sets_the_decode_cancel_flag():
    engine = FakeEngine(default="word " * 50, token_delay_ms=20)
    completer = await ready_completer(engine)
    task = asyncio.ensure_future(completer.suggest(URI, "x = ", 4, SETTINGS))
    await asyncio.sleep(0.1)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(0.1)  # the worker thread notices the flag at its next step
    assert engine.cancelled_calls == 1
    assert completer.stats.counts["cancelled"] == 1


class _IgnoresCancel(FakeEngine):
    """An engine that finishes its answer even when superseded (as a remote stream may)."""

    def complete(self, request, *, stop=None, cancel=None):
        import time

        time.sleep(0.2)
        return super().complete(request, stop=stop)


async def test_a_result_for_an_old_version_is_dropped_but_cached():
    engine = _IgnoresCancel(rules=[Rule("a = ", "42")])
    completer = await ready_completer(engine)
    ticket = completer.lanes.begin(URI)
    task = asyncio.ensure_future(completer.suggest(URI, "a = \n", 4, SETTINGS, ticket=ticket))
    await asyncio.sleep(0.05)
    completer.lanes.supersede(URI)  # an edit arrives while the model works
    stale = await task
    assert (stale.text, stale.reason) == ("", "stale") and stale.result is not None
    fresh = await completer.suggest(URI, "a = \n", 4, SETTINGS)
    assert (fresh.text, fresh.source) == ("42", "exact_cache")


async def test_crlf_documents_get_crlf_suggestions_and_lf_prompts():
    engine = FakeEngine(rules=[Rule("def f():\n    ", "x = 1\n    return x\n")])
    completer = await ready_completer(engine)
    text = "def f():\r\n    \r\n"
    suggestion = await completer.suggest(URI, text, 14, SETTINGS, eol="\r\n")
    assert suggestion.text == "x = 1\r\n    return x"
    assert "\r" not in engine.calls[0].prefix + engine.calls[0].suffix
    assert engine.calls[0].cache_key == URI


async def test_the_confidence_gate_hides_unlikely_suggestions_and_counts_them():
    engine = FakeEngine(rules=[Rule("a = ", "maybe_this", logprob=-3.0), Rule("b = ", "surely_that", logprob=-0.05)])
    completer = await ready_completer(engine)
    gated = Settings(debounce_ms=0, min_confidence=0.3, min_token_confidence=0)
    low = await completer.suggest(URI, "a = \n", 4, gated)
    assert (low.text, low.reason) == ("", "low_confidence")
    assert low.confidence is not None and abs(low.confidence - 0.0498) < 1e-3  # e^-3
    high = await completer.suggest(URI, "b = \n", 4, gated)
    assert high.text == "surely_that" and high.confidence > 0.9
    assert completer.stats.counts["lowConfidence"] == 1
    shown = await completer.suggest(URI, "a = \n", 4, Settings(debounce_ms=0, min_token_confidence=0))  # the gate off: shown
    assert shown.text == "maybe_this"


async def test_the_token_floor_hides_an_unlikely_first_token_and_counts_it():
    engine = FakeEngine(rules=[Rule("a = ", "maybe_this", logprob=-3.0), Rule("b = ", "surely_that", logprob=-0.05)])
    completer = await ready_completer(engine)
    floored = Settings(debounce_ms=0, min_token_confidence=0.3)
    low = await completer.suggest(URI, "a = \n", 4, floored)
    assert low.text == "" and engine.calls[-1].min_token_logprob == pytest.approx(math.log(0.3))
    high = await completer.suggest(URI, "b = \n", 4, floored)
    assert high.text == "surely_that"
    assert completer.stats.counts["lowConfidence"] == 1 and completer.stats.counts.get("cutAtLowConfidence", 0) == 0


def test_confidence_scores_only_the_tokens_that_were_shown():
    from model_runtime.api import CompletionResult, StopReason

    result = CompletionResult("abc", StopReason.CALLBACK, token_logprobs=(-0.1, -0.2, -5.0), token_text_ends=(1, 3, 3))
    assert result.confidence(3) == (-0.15000000000000002, -0.2)  # the third token added nothing shown
    assert result.confidence(1) == (-0.1, -0.1)
    assert result.confidence(0) is None and CompletionResult("", StopReason.EOS).confidence(2) is None


async def test_an_excerpt_of_a_large_document_types_through_like_the_whole_text():
    """The server passes an excerpt around the cursor (Document.excerpt) and its base offset."""
    from lsp_server.context import window_reach_chars
    from lsp_server.documents import Document

    engine = FakeEngine(rules=[Rule("value = ", "compute(alpha)")], context_tokens=256)
    completer = await ready_completer(engine)
    filler = "".join(f"line_{k} = {k}\n" for k in range(20_000))
    doc = Document(URI, filler + "value = \n" + filler)
    reach = window_reach_chars(256)

    async def suggest_at(offset: int):
        excerpt, base = doc.excerpt(offset, reach)
        assert base > 0 and len(excerpt) < len(doc) // 10
        return await completer.suggest(URI, excerpt, offset - base, SETTINGS, base=base, document_chars=len(doc))

    cursor = len(filler) + 8
    first = await suggest_at(cursor)
    assert (first.text, first.source) == ("compute(alpha)", "model")
    doc.replace(cursor, cursor, "comp")
    second = await suggest_at(cursor + 4)
    assert (second.text, second.source) == ("ute(alpha)", "typed_through")
    doc.replace(10, 11, "Z")  # an edit far away, outside every window: the document changed
    doc.replace(cursor + 4, cursor + 4, "u")
    third = await suggest_at(cursor + 5)
    assert third.text == "te(alpha)"  # still typed through: nothing the model sees has changed
    doc.replace(cursor + 100, cursor + 100, "!")  # an edit inside the suffix window
    doc.replace(cursor + 5, cursor + 5, "t")
    fourth = await suggest_at(cursor + 6)
    assert fourth.source != "typed_through"
