"""The engine with the fast greedy step (``LoadOptions.fast_decode``) answers exactly as the plain
loop does: same text, stop reason, token count, scores and stored cache, over a typing session
with KV reuse, token healing, stop rules, cancellation, the confidence floor and ignored
end-of-text; and the prompt's short uncached tail really is fed in the fast step's forward."""

from __future__ import annotations

import threading

import pytest
import torch

from model_runtime import CompletionRequest, StopReason
from tests.unit.test_runtime_engine import SOURCE, SUFFIX

TYPED = "        self.counts[word] = self.counts.get(word, 0) + 1\n        return self.counts[word]\n"
VARIANTS = {"fast": dict(fast_decode=True), "fast-no-drafts": dict(fast_decode=True, draft_tokens=0)}


@pytest.fixture(scope="module")
def engines(engine_factory):
    return {"plain": engine_factory(fast_decode=False), **{name: engine_factory(**options) for name, options in VARIANTS.items()}}


def request(prefix, **kw):
    kw.setdefault("max_new_tokens", 16)
    return CompletionRequest(prefix=prefix, suffix=SUFFIX, **kw)


def first_line(text):
    index = text.find("\n")
    return index if index >= 0 else None


def pair(engines, name, req, **kw):
    """(fast, plain) answers to ``req``; both start from empty KV stores (reuse compared alike)."""
    results = []
    for engine in (engines[name], engines["plain"]):
        engine.kv_store.clear()
        results.append(engine.complete(req, **kw))
    return results


def assert_same(got, expected, label):
    assert (got.text, got.stop_reason, got.stats.generated_tokens) == (expected.text, expected.stop_reason, expected.stats.generated_tokens), label
    assert got.token_text_ends == expected.token_text_ends, label
    assert torch.allclose(torch.tensor(got.token_logprobs), torch.tensor(expected.token_logprobs), atol=1e-4), label
    assert got.stats.reused_tokens == expected.stats.reused_tokens, label


def test_the_fast_step_is_used(engines):
    assert engines["plain"].fast is None
    assert all(engines[name].fast is not None for name in VARIANTS)


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("healing", [False, True])
def test_a_typing_session_gives_the_plain_loops_answers(engines, name, healing):
    """Every keystroke of two retyped lines, one KV slot for the document (reuse, crops of the
    previous suggestion, delta prefills), single-line stops: answers and stored slots equal."""
    fast, plain = engines[name], engines["plain"]
    fast.kv_store.clear(), plain.kv_store.clear()
    key = f"doc-{name}-{healing}"
    merged = 0
    for typed in range(0, len(TYPED), 2):
        prefix = SOURCE + TYPED[:typed]
        results = [engine.complete(request(prefix, cache_key=key, token_healing=healing), stop=first_line) for engine in (fast, plain)]
        assert_same(*results, repr(TYPED[:typed]))
        assert fast.kv_store.token_ids(key) == plain.kv_store.token_ids(key), repr(TYPED[:typed])
        merged += results[0].stats.prefilled_tokens <= 2 and results[0].stats.healed_chars == 0
    assert merged > 5  # keystrokes whose short delta went through the fast step's forward


@pytest.mark.parametrize("name", list(VARIANTS))
def test_multi_line_answers_and_the_token_cap_are_the_same(engines, name):
    for max_new_tokens in (1, 2, 7, 40):
        for prefix in (SOURCE, SOURCE + "        self.", "def f(x):\n    "):
            got, expected = pair(engines, name, request(prefix, max_new_tokens=max_new_tokens, token_healing=False))
            assert_same(got, expected, (prefix[-12:], max_new_tokens))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_stop_rule_mid_draft_leaves_a_cache_that_answers_like_a_cold_run(engines, engine_factory, name):
    fast, plain = engines[name], engines["plain"]
    free = plain.complete(request(SOURCE, max_new_tokens=24, token_healing=False))
    assert len(free.text) > 6
    for cut in (1, 3, 5):
        stop = lambda text, cut=cut: cut if len(text) >= cut else None  # noqa: E731
        got, expected = pair(engines, name, request(SOURCE, max_new_tokens=24, token_healing=False, cache_key="doc"), stop=stop)
        assert_same(got, expected, cut)
        # Typing on from the stored slot (which holds the tokens before the stop) answers as cold.
        following = request(SOURCE + free.text[:cut], max_new_tokens=12, token_healing=False, cache_key="doc")
        warm = fast.complete(following)
        assert warm.stats.reused_tokens > 0
        assert warm.text == plain.complete(request(SOURCE + free.text[:cut], max_new_tokens=12, token_healing=False)).text


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cancellation_stops_at_the_same_token(engines, name):
    results = []
    for engine in (engines[name], engines["plain"]):
        engine.kv_store.clear()
        cancel, calls = threading.Event(), []

        def stop(text, calls=calls, cancel=cancel):
            calls.append(text)
            if len(calls) == 3:
                cancel.set()

        results.append(engine.complete(request(SOURCE, max_new_tokens=50, token_healing=False, cache_key="c"), stop=stop, cancel=cancel))
    assert results[0].stop_reason == StopReason.CANCELLED and results[0].stats.generated_tokens == 3
    assert_same(*results, "cancelled")
    assert engines[name].kv_store.token_ids("c") == engines["plain"].kv_store.token_ids("c")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_confidence_floor_cuts_at_the_same_token(engines, name):
    free = engines["plain"].complete(request(SOURCE, max_new_tokens=12, token_healing=False))
    ranked = sorted(free.token_logprobs)
    for floor in ((ranked[1] + ranked[2]) / 2, (ranked[-2] + ranked[-1]) / 2):
        got, expected = pair(engines, name, request(SOURCE, max_new_tokens=12, token_healing=False, min_token_logprob=floor))
        assert expected.stop_reason == StopReason.LOW_CONFIDENCE
        assert_same(got, expected, floor)


def favour(engine, token_id, after_rows):
    """Script the fast step: from the ``after_rows``-th logits row it computes on, ``token_id``
    wins (a model that "wants" a special token after some generated tokens)."""
    forward = engine.fast.forward
    real, rows = forward.logits, []

    def scripted(*args, **kwargs):
        logits = real(*args, **kwargs).clone()  # [T, V]
        for row in range(logits.shape[0]):
            rows.append(row)
            if len(rows) > after_rows:
                logits[row, token_id] = 1e9
        return logits

    forward.logits = scripted
    return lambda: forward.__dict__.pop("logits")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_special_tokens_from_the_fast_step_end_generation_and_never_leak(engines, name):
    engine = engines[name]
    restore = favour(engine, engine.fim.middle_id, 3)
    try:
        ended = engine.complete(request(SOURCE, max_new_tokens=20, token_healing=False))
        forced = engine.complete(request(SOURCE, max_new_tokens=6, token_healing=False, ignore_eos=True))
    finally:
        restore()
    # The prompt's last row picks the first token, so the special token comes after at most 3.
    assert ended.stop_reason == StopReason.EOS and 1 <= ended.stats.generated_tokens <= 3
    assert "<fim" not in ended.text
    assert forced.stop_reason == StopReason.MAX_TOKENS and forced.stats.generated_tokens == 6
    assert "<fim" not in forced.text


def test_ignore_eos_answers_like_the_plain_loop(engines):
    for name in VARIANTS:
        got, expected = pair(engines, name, request(SOURCE, max_new_tokens=20, token_healing=False, ignore_eos=True))
        assert_same(got, expected, name)


def test_a_long_uncached_prompt_takes_the_static_prefill(engines, monkeypatch):
    engine = engines["fast"]
    engine.kv_store.clear()
    calls = []
    real = engine.prefill
    monkeypatch.setattr(engine, "prefill", lambda cache, ids, start: calls.append(len(ids)) or real(cache, ids, start))
    cold = engine.complete(request(SOURCE, token_healing=False, cache_key="long"))
    assert calls and calls[0] == cold.stats.prompt_tokens  # cold: the whole prompt, statically
    calls.clear()
    warm = engine.complete(request(SOURCE + "  ", token_healing=False, cache_key="long"))
    assert warm.stats.prefilled_tokens <= 3 and not calls  # a short delta: in the fast step
