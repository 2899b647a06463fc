import threading

import pytest
import torch
from transformers import DynamicCache

from model_runtime import CompletionRequest, StopReason
from model_runtime.decode import forward_tokens

SOURCE = '''import os


def read_lines(path, encoding="utf-8"):
    """Return the lines of a text file."""
    with open(path, encoding=encoding) as handle:
        return [line.rstrip("\\n") for line in handle]


class Counter:
    def __init__(self):
        self.counts = {}

    def add(self, word):
'''
SUFFIX = '''

    def total(self):
        return sum(self.counts.values())
'''


def _request(prefix, suffix=SUFFIX, **kw):
    kw.setdefault("max_new_tokens", 12)
    return CompletionRequest(prefix=prefix, suffix=suffix, **kw)


@pytest.mark.parametrize("order", ["psm", "spm"])
def test_reuse_after_appended_characters_equals_a_cold_run(engine_factory, order):
    warm, cold = engine_factory(), engine_factory()
    prefix = SOURCE + "        self.counts"
    warm.complete(_request(prefix, fim_order=order, cache_key="doc"))
    for typed in ("[", "[wo", "[word] = self.counts.get(word, 0) + 1"):
        request = _request(prefix + typed, fim_order=order, cache_key="doc")
        got, expected = warm.complete(request), cold.complete(request)
        cold.kv_store.clear()
        assert got.text == expected.text
        assert got.stats.reused_tokens > 0 and expected.stats.reused_tokens == 0
        assert got.stats.prefilled_tokens + got.stats.reused_tokens == got.stats.prompt_tokens
    if order == "spm":  # typing only appends: nearly the whole prompt is reused
        assert got.stats.prefilled_tokens <= 25


def test_reuse_after_an_edit_in_the_middle_equals_a_cold_run(engine_factory):
    warm, cold = engine_factory(), engine_factory()
    warm.complete(_request(SOURCE, cache_key="doc"))
    edited = SOURCE.replace("read_lines", "read_all_lines")
    got, expected = warm.complete(_request(edited, cache_key="doc")), cold.complete(_request(edited))
    assert got.text == expected.text
    assert 0 < got.stats.reused_tokens < got.stats.prompt_tokens - 10


def test_two_interleaved_documents_keep_their_own_slots(engine_factory):
    warm, cold = engine_factory(), engine_factory()
    other = "def main():\n    args = parse()\n    "
    for step in range(3):
        for key, prefix in (("a", SOURCE + "    " * step), ("b", other + "x" * step)):
            request = _request(prefix, cache_key=key)
            got = warm.complete(request)
            assert got.text == cold.complete(request).text
            cold.kv_store.clear()
            if step:
                assert got.stats.reused_tokens >= got.stats.prompt_tokens - 8
    assert sorted(warm.kv_store.keys()) == ["a", "b"]


def test_cached_decode_logits_equal_full_recompute(engine):
    ids = engine.tokenize(SOURCE)
    full = forward_tokens(engine.model, ids, DynamicCache(), 0)
    cache = DynamicCache()
    forward_tokens(engine.model, ids[:-5], cache, 0)
    for position in range(len(ids) - 5, len(ids)):
        step = forward_tokens(engine.model, [ids[position]], cache, position)
    assert torch.allclose(full, step, atol=1e-4)


def test_the_stop_callback_cuts_the_text_and_ends_decoding(engine):
    free = engine.complete(_request(SOURCE, max_new_tokens=16, token_healing=False))
    assert len(free.text) > 4, "the random model should produce some text"
    seen = []
    called = engine.complete(
        _request(SOURCE, max_new_tokens=16, token_healing=False), stop=lambda text: seen.append(text) or (1 if len(seen) == 3 else None)
    )
    assert called.stop_reason == StopReason.CALLBACK and called.text == seen[-1][:1]
    assert called.stats.generated_tokens == 3
    assert seen[-1] == free.text[: len(seen[-1])]  # the same decode until the cut


def test_cancellation_stops_within_one_decode_step(engine):
    cancel, calls = threading.Event(), []

    def stop(text):
        calls.append(text)
        if len(calls) == 3:
            cancel.set()

    result = engine.complete(_request(SOURCE, max_new_tokens=50), stop=stop, cancel=cancel)
    assert result.stop_reason == StopReason.CANCELLED
    assert result.stats.generated_tokens == 3


def test_a_queued_request_returns_when_cancelled(engine):
    release, started = threading.Event(), threading.Event()

    def hold(text):
        started.set()
        release.wait(5)

    first = threading.Thread(target=engine.complete, args=(_request(SOURCE, max_new_tokens=1),), kwargs={"stop": hold})
    first.start()
    assert started.wait(5)
    cancel = threading.Event()
    cancel.set()
    result = engine.complete(_request(SOURCE), cancel=cancel)
    release.set()
    first.join()
    assert result.stop_reason == StopReason.CANCELLED and result.stats.generated_tokens == 0


def test_deadline_ends_decoding(engine):
    result = engine.complete(_request(SOURCE, max_new_tokens=100, timeout_ms=0.0))
    assert result.stop_reason == StopReason.DEADLINE


def test_special_tokens_end_generation_and_never_leak(engine_factory, monkeypatch):
    # The plain loop, whose logits come from ``_step``; the fast step's own test scripts its
    # forward (test_runtime_engine_fast.py).
    engine = engine_factory(fast_decode=False)
    middle = engine.fim.middle_id
    real, steps = engine._step, []

    def scripted(ids, positions, cache):
        logits = real(ids, positions, cache).clone()
        steps.append(len(ids))
        if len(steps) == 4:  # after three generated tokens the model "wants" a FIM token
            logits[middle] = 1e9
        return logits

    monkeypatch.setattr(engine, "_step", scripted)
    result = engine.complete(_request(SOURCE, max_new_tokens=20, token_healing=False))
    assert result.stop_reason == StopReason.EOS and result.stats.generated_tokens == 3
    assert "<fim" not in result.text and "<|endoftext|>" not in result.text


@pytest.mark.parametrize("order", ["psm", "spm"])
def test_static_decode_path_gives_the_same_greedy_text_as_transformers(engine_factory, order):
    static, eager = engine_factory(), engine_factory(static_decode=False)
    assert static.static is not None and eager.static is None
    prefix = SOURCE + "        self.counts"
    for typed in ("", "[", "[word", "[word] = 1\n        return"):
        request = _request(prefix + typed, fim_order=order, cache_key="doc", max_new_tokens=20)
        got, expected = static.complete(request), eager.complete(request)
        assert got.text == expected.text and got.stop_reason == expected.stop_reason
        assert got.stats.reused_tokens == expected.stats.reused_tokens


def test_special_token_text_in_the_document_is_spelled_out(engine):
    ids = engine.tokenize("x = '<fim-middle><|endoftext|>'")
    assert not set(ids) & engine.table.stop_ids


def test_token_healing_constrains_the_first_token(engine):
    prefix = SOURCE + "        self.coun"
    removed = engine.table.bytes_of[engine.tokenize(prefix)[-1]]
    assert len(engine.table.ids_starting_with(removed)) > 1, "pick a prefix whose last token can be extended"
    result = engine.complete(_request(prefix, max_new_tokens=1, fim_order="psm"))
    assert result.stats.healed_chars == len(removed.decode())
    # Recompute the constrained greedy choice by hand: prompt without the partial token.
    ids = engine.fim.layout(engine.tokenize(prefix)[:-1], engine.tokenize(SUFFIX), "psm")
    logits = forward_tokens(engine.model, ids, DynamicCache(), 0)
    extensions = engine.table.ids_starting_with(removed)
    shorter = [engine.table.id_of_bytes[removed[:n]] for n in range(1, len(removed)) if removed[:n] in engine.table.id_of_bytes]
    best = max(extensions + shorter, key=lambda i: logits[i].item())
    if best in extensions and len(engine.table.bytes_of[best]) > len(removed):  # healed with text in one step
        assert result.text == engine.table.bytes_of[best][len(removed):].decode("utf-8", errors="replace")
    else:  # the healed bytes alone first (or a shorter piece): a further token brings the text
        assert result.stats.generated_tokens >= 2


def test_no_healing_when_the_last_token_cannot_be_extended(engine):
    prefix = SOURCE + "        return"
    last = engine.table.bytes_of[engine.tokenize(prefix)[-1]]
    assert not last.isspace() and engine.table.ids_starting_with(last) == [engine.tokenize(prefix)[-1]], "pick a prefix whose last token no other token extends"
    healed = engine.complete(_request(prefix))  # healing on, as by default
    assert healed.stats.healed_chars == 0
    assert healed.text == engine.complete(_request(prefix, token_healing=False)).text  # the same prompt


def test_long_prompts_are_truncated_to_fit_the_context(engine):
    long_prefix = SOURCE * 20
    result = engine.complete(_request(long_prefix, max_new_tokens=8))
    assert result.stats.truncated_tokens > 0
    assert result.stats.prompt_tokens + 8 <= engine.info.context_tokens


def test_sampling_is_reproducible_with_a_seed(engine):
    def sampled(seed, temperature=1.0):
        return engine.complete(_request(SOURCE, temperature=temperature, top_p=0.9, seed=seed, max_new_tokens=10)).text

    assert sampled(7) == sampled(7)
    others = {sampled(seed) for seed in range(8, 12)}
    assert others - {sampled(7)}, "another seed must draw other tokens (the seed is used)"
    greedy = sampled(7, temperature=0.0)
    assert greedy == sampled(8, temperature=0.0)  # temperature 0 is greedy: the seed does not matter
    assert others | {sampled(7)} != {greedy}, "temperature 1 must sample, not decode greedily"


def test_concurrent_callers_get_the_same_results_as_serial_ones(engine_factory):
    serial, shared = engine_factory(), engine_factory()
    prefixes = [SOURCE + "    " * i for i in range(4)]
    expected = [serial.complete(_request(p, cache_key=str(i))).text for i, p in enumerate(prefixes)]
    results = [None] * len(prefixes)

    def run(i):
        results[i] = shared.complete(_request(prefixes[i], cache_key=str(i))).text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prefixes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


def test_padding_ids_beyond_the_tokenizer_are_never_sampled(tmp_path, tiny_tokenizer):
    from model_runtime import LoadOptions, load_engine
    from tests.model_factory import build_model_dir

    # SantaCoder pads its vocabulary (49280 rows for a smaller tokenizer); so does this model.
    directory = build_model_dir(tmp_path / "padded", tiny_tokenizer, vocab_size=len(tiny_tokenizer) + 64)
    engine = load_engine(LoadOptions(model=str(directory), device="cpu", fast_decode=False))  # the plain loop: every step scripted
    real = engine._step

    def favour_padding(ids, positions, cache):
        logits = real(ids, positions, cache).clone()
        logits[len(tiny_tokenizer) + 5] = 1e9
        return logits

    expected = engine.complete(_request(SOURCE, max_new_tokens=5, token_healing=False))
    chosen = []
    real_next = engine._next_token

    def record(logits, run, generator):
        token, token_id, logprob = real_next(logits, run, generator)
        chosen.append(token_id)
        return token, token_id, logprob

    engine._step, engine._next_token = favour_padding, record
    result = engine.complete(_request(SOURCE, max_new_tokens=5, token_healing=False))
    assert chosen and max(chosen) < len(tiny_tokenizer)
    assert (result.text, result.stats.generated_tokens) == (expected.text, expected.stats.generated_tokens)
    # The fast step: its output projection favours the same padding id.
    fast = load_engine(LoadOptions(model=str(directory), device="cpu", fast_decode=True))
    forward = fast.fast.forward
    projection = forward.lm_head

    def favour_padding_rows(hidden):
        logits = projection(hidden).clone()
        logits[:, len(tiny_tokenizer) + 5] = 1e9
        return logits

    forward.lm_head = favour_padding_rows
    result = fast.complete(_request(SOURCE, max_new_tokens=5, token_healing=False))
    assert fast.fast.stats_forwards > 0
    assert (result.text, result.stats.generated_tokens) == (expected.text, expected.stats.generated_tokens)


def test_ignore_eos_keeps_decoding_but_never_returns_special_tokens(engine_factory):
    engine = engine_factory(fast_decode=False)  # the plain loop; the fast step's: test_runtime_engine_fast.py
    real = engine._step

    def favour_end_of_text(ids, positions, cache):
        logits = real(ids, positions, cache).clone()
        logits[engine.fim.middle_id] = 1e9
        return logits

    engine._step = favour_end_of_text
    assert engine.complete(_request(SOURCE, max_new_tokens=6, token_healing=False)).stop_reason == StopReason.EOS
    forced = engine.complete(_request(SOURCE, max_new_tokens=6, token_healing=False, ignore_eos=True))
    assert forced.stop_reason == StopReason.MAX_TOKENS and forced.stats.generated_tokens == 6
    assert "<fim" not in forced.text


def test_token_counting_from_other_threads_during_decodes(engine):
    errors, counts = [], []

    def count():
        try:
            for _ in range(200):
                counts.append(engine.count_tokens(SOURCE))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=count) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(3):
        engine.complete(_request(SOURCE, max_new_tokens=4))
    for thread in threads:
        thread.join()
    assert not errors and len(set(counts)) == 1


@pytest.mark.parametrize("prefix", ["def f(x):\n    ", "class A:\n    def f(self, x):\n        if x:\n            ", "x = ", "if x:\n\t", "a = 1\n"])
def test_whitespace_at_the_cursor_is_healed_exactly(engine, prefix):
    """Whatever the (random) model prefers, the suggestion continues the line as typed: the
    healed whitespace comes back byte for byte and no whitespace follows it."""
    ids = engine.tokenize(prefix)
    trailing = engine.table.bytes_of[ids[-1]]
    assert trailing.isspace()
    for seed in range(4):
        result = engine.complete(_request(prefix, suffix=f"\n# {seed}\n", max_new_tokens=3, ignore_eos=True))
        assert result.stats.healed_chars >= len(trailing.decode())
        assert result.text and not result.text[0].isspace(), repr(result.text)


def test_a_token_below_the_confidence_floor_ends_the_suggestion_before_it(engine):
    free = engine.complete(_request(SOURCE, max_new_tokens=8, token_healing=False))
    assert free.text and free.token_logprobs
    ranked = sorted(free.token_logprobs)
    middle = len(ranked) // 2  # half-way between two scores: KV reuse moves scores by rounding only
    floor = (ranked[middle - 1] + ranked[middle]) / 2 if middle else ranked[0] + 1e-3
    cut = engine.complete(_request(SOURCE, max_new_tokens=8, token_healing=False, min_token_logprob=floor))
    first_low = next(i for i, logprob in enumerate(free.token_logprobs) if logprob < floor)
    assert cut.stop_reason == StopReason.LOW_CONFIDENCE
    assert cut.text == free.text[: free.token_text_ends[first_low - 1] if first_low else 0]
    assert engine.complete(_request(SOURCE, max_new_tokens=8, token_healing=False, min_token_logprob=float("-inf"))).text == free.text
