"""The fixed-shape greedy step and prompt-lookup speculation equal plain greedy decoding (CPU, fp32).

The reference recomputes the whole sequence without any cache at every token, so it shares no
code with the paths under test. Random models are built with a large ``initializer_range``
(``tests/model_factory.py``): their logits are peaked, so a wrong mask or a stale KV entry
changes the greedy tokens instead of hiding in a near-tie.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, GPTBigCodeForCausalLM

from model_runtime.fast_decode import WINDOW_BUCKET_TOKENS, GreedyDecoder, window_for
from model_runtime.speculation import draft
from model_runtime.static_decode import StaticGPTBigCode
from tests.model_factory import STDLIB, build_model_dir

CAPACITY = 2 * WINDOW_BUCKET_TOKENS + 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = build_model_dir(tmp_path_factory.mktemp("fast-decode"), n_positions=CAPACITY)
    model = GPTBigCodeForCausalLM.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return model, StaticGPTBigCode(model), len(tokenizer), tokenizer


def recomputed_greedy(model, ids: list[int], count: int, vocab: int, banned=()) -> list[int]:
    """``count`` greedy ids after ``ids``, recomputing the whole sequence each time (no cache)."""
    ids, out = list(ids), []
    with torch.inference_mode():
        for _ in range(count):
            logits = model(torch.tensor([ids])).logits[0, -1, :vocab].clone()
            logits[list(banned)] = float("-inf")
            out.append(int(logits.argmax()))
            ids.append(out[-1])
    return out


def prefill_logits(static: StaticGPTBigCode, ids: list[int], cache, start: int) -> torch.Tensor:
    """The eager static path's prefill of ``ids`` after ``start`` cached positions: the last logits."""
    assert cache.length == start
    with torch.inference_mode():
        return static.forward(torch.tensor(ids), torch.arange(start, start + len(ids)), cache)


def prefill(static: StaticGPTBigCode, ids: list[int], cache, start: int) -> int:
    """The greedy next id after ``prefill_logits``."""
    return int(prefill_logits(static, ids, cache, start).argmax())


def decode(decoder: GreedyDecoder, cache, history: list[int], first: int, count: int, **kwargs) -> list[int]:
    """``first`` and the ``count - 1`` greedy ids after it."""
    out = [first]
    with torch.inference_mode():
        for token, _ in decoder.tokens(cache, history, first, **kwargs):
            out.append(token)
            if len(out) == count:
                break
    return out


def text_ids(tokenizer, name: str, count: int) -> list[int]:
    return tokenizer.encode((STDLIB / name).read_text(encoding="utf-8"))[:count]


@pytest.mark.parametrize("bucketed", [False, True])
@pytest.mark.parametrize("draft_tokens", [0, 4])
def test_equals_recomputed_greedy_after_reuse_crop_and_delta_prefill(setup, draft_tokens, bucketed):
    model, static, vocab, tokenizer = setup
    decoder = GreedyDecoder(static, vocab, [0], draft_tokens=draft_tokens)
    decoder.bucketed = bucketed  # windows in buckets (as compiled) or exactly what is held (eager)
    prompt = text_ids(tokenizer, "textwrap.py", 120)
    cache = static.new_cache()
    first = prefill(static, prompt, cache, 0)
    history = list(prompt)
    assert decode(decoder, cache, history, first, 16) == recomputed_greedy(model, prompt, 16, vocab)
    # Reuse: crop back into the prompt (the buffer keeps a stale tail past the length), then
    # prefill only the new delta, as the engine does on the next keystroke.
    reused = 100
    cache.crop(reused - cache.length)
    edited = prompt[:reused] + text_ids(tokenizer, "heapq.py", 30)
    first = prefill(static, edited[reused:], cache, reused)
    history = list(edited)
    assert decode(decoder, cache, history, first, 20) == recomputed_greedy(model, edited, 20, vocab)
    assert cache.length == len(history)


def pending_decode(decoder: GreedyDecoder, cache, history: list[int], pending: list[int], count: int) -> list[int]:
    """The ``count`` greedy ids after ``history + pending`` with ``pending`` fed in the step."""
    out = []
    with torch.inference_mode():
        for token, _ in decoder.tokens(cache, history, pending):
            out.append(token)
            if len(out) == count:
                break
    return out


@pytest.mark.parametrize("bucketed", [False, True])
@pytest.mark.parametrize("draft_tokens", [0, 5])
def test_an_uncached_prompt_tail_fed_in_the_step_equals_prefill_then_decode(setup, draft_tokens, bucketed):
    """The engine's merged first forward: the prompt's uncached tail and the drafts together."""
    model, static, vocab, tokenizer = setup
    decoder = GreedyDecoder(static, vocab, [0], draft_tokens=draft_tokens)
    decoder.bucketed = bucketed
    prompt = text_ids(tokenizer, "string.py", 140)
    for cached, extra in ((120, ()), (139, ()), (0, ()), (130, prompt[60:100])):
        cache = static.new_cache()
        if cached:
            prefill(static, prompt[:cached], cache, 0)
        history = list(prompt[:cached])
        decoder.stats_forwards = 0
        got = []
        with torch.inference_mode():
            for token, _ in decoder.tokens(cache, history, prompt[cached:], extra=extra):
                got.append(token)
                if len(got) == 18:
                    break
        assert got == recomputed_greedy(model, prompt, 18, vocab), (cached, extra)
        assert history == prompt + got[:-1] and cache.length == len(history)
    # The stale tail of a crop is overwritten before it is read, also when fed as a tail.
    cache.crop(100 - cache.length)
    edited = prompt[:100] + text_ids(tokenizer, "heapq.py", 25)
    history = list(edited[:100])
    assert pending_decode(decoder, cache, history, edited[100:], 12) == recomputed_greedy(model, edited, 12, vocab)


def test_pending_ids_that_do_not_fit_or_a_mismatched_history_are_refused(setup):
    model, static, vocab, tokenizer = setup
    decoder = GreedyDecoder(static, vocab, [0])
    cache = static.new_cache()
    with pytest.raises(ValueError):
        next(decoder.tokens(cache, [], []))
    with pytest.raises(ValueError):
        next(decoder.tokens(cache, [], list(range(CAPACITY + 1))))
    with pytest.raises(ValueError):
        next(decoder.tokens(cache, [1, 2], [3]))


@pytest.mark.parametrize("bucketed", [False, True])
@pytest.mark.parametrize("draft_tokens", [0, 3])
def test_equals_recomputed_greedy_across_a_window_bucket(setup, draft_tokens, bucketed):
    model, static, vocab, tokenizer = setup
    prompt = text_ids(tokenizer, "functools.py", WINDOW_BUCKET_TOKENS - 6)
    cache = static.new_cache()
    first = prefill(static, prompt, cache, 0)
    decoder = GreedyDecoder(static, vocab, [0], draft_tokens=draft_tokens)
    decoder.bucketed = bucketed
    got = decode(decoder, cache, list(prompt), first, 14)
    assert got == recomputed_greedy(model, prompt, 14, vocab)


def test_speculation_equals_plain_greedy_and_accepts_drafts(setup):
    model, static, vocab, tokenizer = setup
    plain = GreedyDecoder(static, vocab, [0])
    speculative = GreedyDecoder(static, vocab, [0], draft_tokens=5)
    accepted = forwards = generated = 0
    for name in ("textwrap.py", "string.py", "bisect.py", "shlex.py"):
        prompt = text_ids(tokenizer, name, 150)
        results = []
        for decoder in (plain, speculative):
            cache = static.new_cache()
            first = prefill(static, prompt, cache, 0)
            results.append(decode(decoder, cache, list(prompt), first, 40))
        assert results[0] == results[1], name
        accepted += speculative.stats_accepted
        forwards += speculative.stats_forwards
        generated += 39
    assert accepted > 0  # else the test would not exercise verification at all
    assert forwards + accepted == generated  # every forward yields one token plus its accepted drafts


def test_lookup_drafts_are_capped_apart_from_the_first_draft(setup):
    """``lookup_tokens`` caps prompt-lookup drafts; ``first_draft`` (the previous suggestion)
    may use all of ``draft_tokens``; the tokens stay plain greedy's."""
    model, static, vocab, tokenizer = setup
    prompt = text_ids(tokenizer, "textwrap.py", 150)
    cache = static.new_cache()
    first = prefill(static, prompt, cache, 0)
    expected = recomputed_greedy(model, prompt, 12, vocab)
    decoder = GreedyDecoder(static, vocab, [0], draft_tokens=6, lookup_tokens=1)
    drafted = []
    real = decoder.forward.greedy

    def counting(ids, *args, **kwargs):
        drafted.append(ids.shape[0] - 1)  # one pending id per forward here
        return real(ids, *args, **kwargs)

    decoder._greedy = counting
    got, history = [first], list(prompt)
    with torch.inference_mode():
        for token, _ in decoder.tokens(cache, history, first, first_draft=expected[1:7]):
            got.append(token)
            if len(got) == 12:
                break
    assert got == expected
    assert drafted[0] == 6 and max(drafted[1:]) <= 1


def inside_draft_stops(decoder: GreedyDecoder, static, prompt: list[int], count: int) -> list[int]:
    """The lengths (``first`` included) at which a stop would cut a verified draft short."""
    cache = static.new_cache()
    out = [prefill(static, prompt, cache, 0)]
    inside = []
    with torch.inference_mode():
        for token, _ in decoder.tokens(cache, list(prompt), out[0]):
            out.append(token)
            # Until a forward's last (bonus) token is yielded, what it yields are accepted drafts.
            if len(out) - 1 < decoder.stats_forwards + decoder.stats_accepted:
                inside.append(len(out))
            if len(out) == count:
                break
    return inside


def test_stopping_mid_draft_leaves_a_consistent_cache(setup):
    """A caller that stops inside an accepted draft stores a cache that decodes on correctly."""
    model, static, vocab, tokenizer = setup
    decoder = GreedyDecoder(static, vocab, [0], draft_tokens=5)
    for name in ("textwrap.py", "string.py", "bisect.py", "heapq.py", "shlex.py", "fnmatch.py"):
        prompt = text_ids(tokenizer, name, 150)
        stops = inside_draft_stops(decoder, static, prompt, 40)
        if stops:
            break
    assert stops, "no prompt had an accepted draft to cut"
    reference = recomputed_greedy(model, prompt, 40, vocab)
    for stop_after in stops[:4] + [2]:
        cache = static.new_cache()
        first = prefill(static, prompt, cache, 0)
        history = list(prompt)
        got = decode(decoder, cache, history, first, stop_after)
        assert got == reference[:stop_after]
        # The stopped-at token is not fed: the cache holds the prompt and the tokens before it.
        assert history == prompt + got[:-1] and cache.length == len(history)
        # Decoding on from the stored state continues the same greedy sequence.
        rest = decode(GreedyDecoder(static, vocab, [0], draft_tokens=5), cache, history, got[-1], 40 - stop_after + 1)
        assert got[:-1] + rest == reference


def test_banned_stop_ids_are_never_picked(setup):
    model, static, vocab, tokenizer = setup
    prompt = text_ids(tokenizer, "bisect.py", 60)
    cache = static.new_cache()
    logits = prefill_logits(static, prompt, cache, 0)[:vocab].clone()
    banned = set(recomputed_greedy(model, prompt, 12, vocab)[:3])  # ids this prompt would pick
    logits[list(banned)] = float("-inf")
    first = int(logits.argmax())
    got = decode(GreedyDecoder(static, vocab, sorted(banned), draft_tokens=3), cache, list(prompt), first, 12, ban_stops=True)
    assert got == [first] + recomputed_greedy(model, prompt + [first], 11, vocab, banned)
    assert not banned & set(got)


def test_log_probabilities_are_those_of_the_full_distribution(setup):
    model, static, vocab, tokenizer = setup
    prompt = text_ids(tokenizer, "heapq.py", 80)
    cache = static.new_cache()
    first = prefill(static, prompt, cache, 0)
    pairs = []
    with torch.inference_mode():
        for pair in GreedyDecoder(static, vocab, [0], draft_tokens=4).tokens(cache, list(prompt), first):
            pairs.append(pair)
            if len(pairs) == 8:
                break
        ids = prompt + [first] + [token for token, _ in pairs]
        logits = model(torch.tensor([ids])).logits[0, len(prompt) : len(prompt) + 8, :vocab]  # [8, V]
        expected = torch.log_softmax(logits.float(), dim=-1).max(dim=-1).values
    assert [token for token, _ in pairs] == ids[len(prompt) + 1 :]
    assert torch.allclose(torch.tensor([logprob for _, logprob in pairs]), expected, atol=1e-4)


def test_the_generator_ends_when_the_context_is_full(setup):
    model, static, vocab, tokenizer = setup
    prompt = text_ids(tokenizer, "shlex.py", CAPACITY - 5)
    cache = static.new_cache()
    first = prefill(static, prompt, cache, 0)
    history = list(prompt)
    got = decode(GreedyDecoder(static, vocab, [0], draft_tokens=4), cache, history, first, 100)
    assert len(got) == 6 and len(history) == CAPACITY == cache.length  # the last yielded id has no position left
    assert got == recomputed_greedy(model, prompt, 6, vocab)


def test_window_buckets_cover_the_positions_and_stop_at_the_capacity():
    assert window_for(1, 1000) == WINDOW_BUCKET_TOKENS
    assert window_for(WINDOW_BUCKET_TOKENS, 1000) == WINDOW_BUCKET_TOKENS
    assert window_for(WINDOW_BUCKET_TOKENS + 1, 1000) == 2 * WINDOW_BUCKET_TOKENS
    assert window_for(999, 1000) == 1000


def test_draft_takes_the_latest_longest_match():
    assert draft([5, 1, 2, 9, 1, 2, 3, 4, 1, 2], 2) == [3, 4]  # latest "1 2" wins over the first
    assert draft([7, 8, 9, 4, 8, 9, 5, 3, 8, 9], 3, max_ngram=2) == [5, 3, 8]
    assert draft([1, 2, 3, 7, 2, 3, 6, 0, 1, 2, 3], 1) == [7]  # the 3-gram "1 2 3" beats the later "2 3"
    assert draft([1, 2, 3], 4) == []  # no earlier occurrence of any tail
    assert draft([1, 2, 1], 0) == []
    assert draft([4, 1], 2, extra=[1, 6, 6]) == [6, 6]  # the extra source is searched first


def test_continuation_drafts_the_rest_of_a_suggestion_being_typed():
    from model_runtime.speculation import continuation

    spelled = [b"", b"call", b"back", b" in", b"ba", b"ck", b"c", b"k", b"x"]
    ids = {piece: index for index, piece in enumerate(spelled) if piece}
    assert continuation([2, 3], [4], spelled, ids, 8) == [5, 3]  # typed "ba" of "back": "ck", " in"
    assert continuation([1, 2, 3], [1, 4], spelled, ids, 8) == [5, 3]
    assert continuation([1, 2, 3], [1, 2], spelled, ids, 8) == [3]  # typed up to a token boundary
    assert continuation([1, 2, 3], [1, 2], spelled, ids, 0) == []
    assert continuation([2, 3, 3, 3], [4], spelled, ids, 2) == [5, 3]  # at most ``count``
    assert continuation([1, 2, 0, 3], [1], spelled, ids, 8) == [2]  # a special id ends what was held
    assert continuation([1, 2, 3], [1, 8], spelled, ids, 8) == []  # typed something else
    assert continuation([1, 2], [1, 2], spelled, ids, 8) == []  # typed all of it: nothing left
    assert continuation([1, 2], [0], spelled, ids, 8) == []  # a special id fed: no alignment
    odd = [b"", b"cq", b"c"]
    assert continuation([1], [2], odd, {b"cq": 1, b"c": 2}, 8) == []  # the rest "q" is no token
