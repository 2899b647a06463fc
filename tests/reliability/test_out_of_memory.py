"""Out of memory during a completion: one retry with about half the prompt, then that request
fails alone and the engine goes on.

The tiny model runs on the CPU, so running out of memory is simulated: the model call the
engine makes (the static-KV forward, or the model's own ``forward`` on the transformers path)
raises ``torch.OutOfMemoryError`` where a test says so. It leaves the KV half-written as a
real failure may: on the static path NaNs over the positions of that call (as if it failed
part-way through the layers), on the transformers path a cache that has grown already (as if
the logits found no memory). Either way the next answer must equal a fresh engine's.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import pytest
import torch
from transformers import DynamicCache

from model_runtime import CompletionOOMError, CompletionRequest, LoadOptions, StopReason
from model_runtime.decode import forward_tokens
from tests.unit.test_runtime_engine import SOURCE, SUFFIX

OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB\nOf the allocated memory 9.50 GiB is reserved by PyTorch"
ENGINE_LOG = "model_runtime.engine"

Fails = Callable[[list[int], int], bool]  # (ids of one model call, its start position) -> run out of memory?


def _request(**kw) -> CompletionRequest:
    kw.setdefault("max_new_tokens", 8)
    kw.setdefault("token_healing", False)
    return CompletionRequest(prefix=kw.pop("prefix", SOURCE), suffix=kw.pop("suffix", SUFFIX), **kw)


def inject_out_of_memory(engine, fails: Fails) -> list[list[int]]:
    """Make the engine's model calls raise ``torch.OutOfMemoryError`` where ``fails`` says so.

    Returns the list the ids of every model call are appended to, failed ones included.
    """
    calls: list[list[int]] = []
    if engine.static is not None:
        real_static = engine.static.forward

        def static_forward(token_ids, positions, cache):
            ids, start_position = token_ids.tolist(), int(positions[0])
            calls.append(ids)
            if fails(ids, start_position):
                cache.keys[:, start_position : start_position + len(ids)] = float("nan")
                cache.values[:, start_position : start_position + len(ids)] = float("nan")
                raise torch.OutOfMemoryError(OOM_MESSAGE)
            return real_static(token_ids, positions, cache)

        engine.static.forward = static_forward
    else:
        real_model = engine.model.forward

        def model_forward(*args, input_ids, position_ids, **kwargs):
            ids = input_ids[0].tolist()
            calls.append(ids)
            out = real_model(*args, input_ids=input_ids, position_ids=position_ids, **kwargs)  # the cache grows ...
            if fails(ids, int(position_ids[0, 0])):
                raise torch.OutOfMemoryError(OOM_MESSAGE)  # ... and then the logits find no memory
            return out

        engine.model.forward = model_forward
    if engine.fast is not None:  # the fast greedy step's forward, the same way
        forward = engine.fast.forward
        real_fast = forward.logits

        def fast_logits(ids, positions, keys, values, window, skip=0, exact=False):
            token_ids, start_position = ids.tolist(), int(positions[0])
            calls.append(token_ids)
            if fails(token_ids, start_position):
                keys[:, start_position : start_position + len(token_ids)] = float("nan")
                values[:, start_position : start_position + len(token_ids)] = float("nan")
                raise torch.OutOfMemoryError(OOM_MESSAGE)
            return real_fast(ids, positions, keys, values, window, skip, exact)

        forward.logits = fast_logits
    return calls


def memory_is_back(engine) -> None:
    """Undo ``inject_out_of_memory``: the engine's model calls are the real ones again."""
    if engine.static is not None:
        engine.static.__dict__.pop("forward", None)
    engine.model.__dict__.pop("forward", None)
    if engine.fast is not None:
        engine.fast.forward.__dict__.pop("logits", None)


def greedy_by_hand(engine, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """The greedy continuation of ``prompt_ids`` with a fresh cache, independent of the engine's loop."""
    cache, generated = DynamicCache(), []
    logits = forward_tokens(engine.model, prompt_ids, cache, 0)
    while len(generated) < max_new_tokens:
        token = int(torch.argmax(logits[: engine.table.size]))
        if token in engine.table.stop_ids:
            break
        generated.append(token)
        logits = forward_tokens(engine.model, [token], cache, len(prompt_ids) + len(generated) - 1)
    return generated


def kept_tail_and_head(engine, ids: list[int], prefix_ids: list[int], suffix_ids: list[int]) -> tuple[int, int]:
    """(prefix, suffix) tokens kept, if ``ids`` lays out the prefix's tail and the suffix's head (SPM)."""
    for kept_suffix in range(len(suffix_ids) + 1):
        kept_prefix = len(ids) - 3 - kept_suffix
        tail = prefix_ids[len(prefix_ids) - kept_prefix :]
        if 0 <= kept_prefix <= len(prefix_ids) and engine.fim.layout(tail, suffix_ids[:kept_suffix], "spm") == ids:
            return kept_prefix, kept_suffix
    raise AssertionError("the retried prompt is not the tail of the prefix and the head of the suffix")


def prefills(calls: list[list[int]]) -> list[list[int]]:
    return [ids for ids in calls if len(ids) > 1]


def retry_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ENGINE_LOG and r.levelno == logging.WARNING and "out of memory" in r.msg]


@pytest.mark.parametrize("static_decode", [True, False], ids=["static", "transformers"])
def test_a_prompt_that_runs_out_of_memory_is_retried_once_with_about_half(engine_factory, static_decode, caplog):
    engine = engine_factory(static_decode=static_decode)
    prefix_ids, suffix_ids = engine.tokenize(SOURCE), engine.tokenize(SUFFIX)
    full_tokens = len(prefix_ids) + len(suffix_ids) + 3
    limit = full_tokens // 2 + 8
    calls = inject_out_of_memory(engine, lambda ids, start: len(ids) > limit)

    with caplog.at_level(logging.WARNING, logger=ENGINE_LOG):
        result = engine.complete(_request(cache_key="doc"))

    first, retried = prefills(calls)  # exactly one retry
    assert len(first) == full_tokens
    assert result.stats.oom_retries == 1
    assert result.stats.prompt_tokens == len(retried) <= (full_tokens - 3) // 2 + 3
    assert result.stats.truncated_tokens == full_tokens - len(retried)
    # Cut like an over-long prompt: the tail of the prefix and the head of the suffix, both kept.
    kept_prefix, kept_suffix = kept_tail_and_head(engine, retried, prefix_ids, suffix_ids)
    assert kept_prefix > 0 and kept_suffix > 0
    expected = greedy_by_hand(engine_factory(), retried, 8)
    assert result.stats.generated_tokens == len(expected)
    assert engine.table.text_of(expected).startswith(result.text) and result.text
    (warning,) = retry_warnings(caplog)
    message = warning.getMessage()
    assert f"{full_tokens} prompt tokens" in message and f"retrying once with {len(retried)}" in message
    # The retried prompt's KV was stored as usual and serves the next keystroke.
    assert engine.kv_store.keys() == ["doc"]


@pytest.mark.parametrize("static_decode", [True, False], ids=["static", "transformers"])
def test_out_of_memory_twice_fails_that_request_alone(engine_factory, static_decode, caplog):
    engine, fresh = engine_factory(static_decode=static_decode), engine_factory(static_decode=static_decode)
    engine.complete(_request(cache_key="doc"))  # slots that the failing request could reuse and spoil
    engine.complete(_request(prefix="def main():\n    ", cache_key="other"))
    calls = inject_out_of_memory(engine, lambda ids, start: True)

    typed = _request(prefix=SOURCE + "        self.", cache_key="doc")
    with caplog.at_level(logging.WARNING, logger=ENGINE_LOG), pytest.raises(CompletionOOMError) as raised:
        engine.complete(typed)

    assert len(calls) == 2, "one retry, no more"
    full_tokens = engine.count_tokens(typed.prefix) + engine.count_tokens(typed.suffix) + 3
    assert len(calls[0]) < full_tokens  # the first attempt reused the "doc" slot ...
    assert len(calls[1]) <= (full_tokens - 3) // 2 + 3  # ... the retry, with the slots dropped, prefilled about half
    message = str(raised.value)
    assert "\n" not in message and "out of memory" in message and "quantization" in message
    assert raised.value.__cause__ is None and raised.value.__context__ is None  # no traceback pinning tensors
    assert len(retry_warnings(caplog)) == 1
    assert not engine._lock.locked() and len(engine.kv_store) == 0
    # Memory is back: the same engine answers like a fresh one, from a clean slot store.
    memory_is_back(engine)
    for request in (typed, _request(prefix=SOURCE + "        self.counts", cache_key="doc")):
        got, expected = engine.complete(request), fresh.complete(request)
        assert (got.text, got.stop_reason, got.stats.oom_retries) == (expected.text, expected.stop_reason, 0)
        assert got.stats.reused_tokens == expected.stats.reused_tokens


def test_out_of_memory_in_a_decode_step_is_retried(engine_factory, caplog):
    engine = engine_factory(fast_decode=False)  # the plain loop, one token per model call
    decode_steps = []

    def third_decode_step_of_the_first_attempt(ids: list[int], start: int) -> bool:
        if len(ids) == 1:
            decode_steps.append(start)
        return len(ids) == 1 and len(decode_steps) == 3

    calls = inject_out_of_memory(engine, third_decode_step_of_the_first_attempt)
    with caplog.at_level(logging.WARNING, logger=ENGINE_LOG):
        result = engine.complete(_request(max_new_tokens=10, cache_key="doc"))

    first, retried = prefills(calls)
    assert len(retried) < len(first)
    assert result.stats.oom_retries == 1 and result.stop_reason in (StopReason.MAX_TOKENS, StopReason.EOS)
    expected = greedy_by_hand(engine_factory(fast_decode=False), retried, 10)
    assert result.stats.generated_tokens == len(expected)
    assert engine.table.text_of(expected).startswith(result.text)
    (warning,) = retry_warnings(caplog)
    assert "during decode" in warning.getMessage() and "3 generated" in warning.getMessage()  # the third one failed to feed
    # The stored slot is the retried prompt's and is consistent: the next keystroke reuses it.
    following = _request(prefix=SOURCE + "x", max_new_tokens=4, cache_key="doc")
    got, cold = engine.complete(following), engine_factory().complete(following)
    assert got.text == cold.text and got.stats.oom_retries == 0


def test_errors_other_than_out_of_memory_are_not_retried(engine):
    def broken(ids, start):
        raise RuntimeError("shape mismatch in layer 3")

    engine.static.forward = lambda token_ids, positions, cache: broken(token_ids, positions)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        engine.complete(_request())
    assert not engine._lock.locked()


def test_cancellation_stops_the_retry(engine_factory):
    engine = engine_factory()
    inject_out_of_memory(engine, lambda ids, start: len(ids) > 150)  # the full prompt (199 tokens), not the retry
    cancel, seen = threading.Event(), []

    def stop(text):
        seen.append(text)
        if len(seen) == 2:
            cancel.set()

    result = engine.complete(_request(max_new_tokens=20), stop=stop, cancel=cancel)
    assert result.stop_reason == StopReason.CANCELLED
    assert result.stats.oom_retries == 1 and result.stats.generated_tokens == 2


def test_a_deadline_that_passed_during_the_failed_attempt_ends_the_retry_at_once(engine_factory):
    engine = engine_factory()

    def slow_then_out_of_memory(ids, start):
        time.sleep(0.05)
        return True

    calls = inject_out_of_memory(engine, slow_then_out_of_memory)
    result = engine.complete(_request(timeout_ms=20))
    assert (result.text, result.stop_reason, result.stats.oom_retries) == ("", StopReason.DEADLINE, 1)
    assert len(calls) == 1, "no model call after the deadline"
    assert not engine._lock.locked()


async def test_the_server_answers_nothing_logs_one_line_and_recovers(engine_factory, caplog):
    from lsp_server.completer import Completer
    from lsp_server.engine_host import EngineHost
    from lsp_server.settings import Settings
    from lsp_server.stats import ServerStats

    engine = engine_factory()
    inject_out_of_memory(engine, lambda ids, start: True)
    host = EngineHost(loader=lambda options, progress: engine)
    assert await host.load(LoadOptions(model="tiny")) is None
    completer = Completer(host, ServerStats())
    settings = Settings(debounce_ms=0, max_new_tokens=6)
    uri, text = "file:///work/counter.py", SOURCE + "        self.counts\n" + SUFFIX
    offset = len(SOURCE + "        self.counts")

    with caplog.at_level(logging.WARNING):
        failed = await completer.suggest(uri, text, offset, settings)

    assert (failed.text, failed.reason) == ("", "error")
    counts = completer.stats.snapshot()
    assert (counts["errors"], counts["outOfMemory"]) == (1, 1)
    (line,) = [r for r in caplog.records if r.name == "lsp_server.completer"]
    assert line.levelno == logging.WARNING and line.exc_info is None and "\n" not in line.getMessage()
    assert "out of memory" in line.getMessage()

    memory_is_back(engine)
    answered = await completer.suggest(uri, text, offset, settings)
    assert answered.reason != "error" and answered.source == "model"
    assert answered.result is not None and answered.result.stats.oom_retries == 0
    assert completer.stats.snapshot()["errors"] == 1


def test_out_of_memory_in_a_fast_step_is_retried(engine_factory, caplog):
    """The fast greedy step runs out of memory in its third forward (after tokens were yielded
    and pushed): the retry answers like the plain loop on the retried prompt, and the stored
    slot is the retry's, consistent for the next keystroke."""
    engine = engine_factory(fast_decode=True)
    plain = engine_factory(fast_decode=False)
    real_static = engine.static.forward
    fast_calls = []
    forward = engine.fast.forward
    real_fast = forward.logits

    def counting(ids, positions, keys, values, window, skip=0, exact=False):
        fast_calls.append(ids.tolist())
        if len(fast_calls) == 3:
            keys[:, int(positions[0]) :] = float("nan")
            raise torch.OutOfMemoryError(OOM_MESSAGE)
        return real_fast(ids, positions, keys, values, window, skip, exact)

    forward.logits = counting
    prompts = []
    engine.static.forward = lambda ids, positions, cache: prompts.append(ids.tolist()) or real_static(ids, positions, cache)
    with caplog.at_level(logging.WARNING, logger=ENGINE_LOG):
        result = engine.complete(_request(max_new_tokens=12, cache_key="doc"))
    assert len(fast_calls) > 3
    first, retried = prompts  # cold: the whole prompt (no merged prefill), then the retry's half
    assert len(retried) < len(first)
    assert result.stats.oom_retries == 1
    expected = greedy_by_hand(plain, retried, 12)
    assert result.stats.generated_tokens == len(expected) and engine.table.text_of(expected).startswith(result.text)
    (warning,) = retry_warnings(caplog)
    assert "during decode" in warning.getMessage()
    memory_is_back(engine)
    following = _request(prefix=SOURCE + "x", max_new_tokens=4, cache_key="doc")
    got, cold = engine.complete(following), plain.complete(following)
    assert got.text == cold.text and got.stats.oom_retries == 0 and got.stats.reused_tokens > 0
