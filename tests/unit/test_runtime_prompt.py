"""The prompt builder: budget, whitespace-exact token healing, extra context, truncation."""

from __future__ import annotations

import logging

import pytest
from transformers import AutoTokenizer

from model_runtime.api import CompletionRequest, ModelInfo
from model_runtime.fim import find_fim_tokens
from model_runtime.loader import BUNDLED_DIR
from model_runtime.prompt import HealingGuide, PromptBuilder, heal, prompt_budget
from model_runtime.vocabulary import TokenTable


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(BUNDLED_DIR / "tiny")


@pytest.fixture(scope="module")
def table(tokenizer):
    return TokenTable(tokenizer)


def _ids(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


def _builder(tokenizer, table, context_tokens=512):
    fim = find_fim_tokens(tokenizer.get_vocab())
    info = ModelInfo("tiny", "cpu", "fp32", "none", context_tokens, "spm", fim.names, 0)
    return PromptBuilder(lambda text: _ids(tokenizer, text) if text else [], table, fim, info)


def test_trailing_indentation_is_backed_off_with_its_line_break(tokenizer, table):
    prefix = "class A:\n    def f(self, x):\n        if x:\n            "
    kept, healed = heal(table, _ids(tokenizer, prefix))
    assert healed == b"\n            "
    assert table.text_of(kept) + healed.decode() == prefix


def test_a_partial_word_is_backed_off_only_when_it_can_grow(tokenizer, table):
    kept, healed = heal(table, _ids(tokenizer, "import o"))
    assert healed == b" o" and len(table.ids_starting_with(healed)) > 1
    ids = _ids(tokenizer, "x = 1")
    assert heal(table, ids) == (ids, b"") or len(table.ids_starting_with(table.bytes_of[ids[-1]])) > 1


def _walk(table, healed: bytes, choose) -> bytes:
    """Drive a guide with ``choose(allowed, banned)`` until it is done; the bytes produced."""
    guide, produced = HealingGuide(table, healed), b""
    for _ in range(len(healed) + 2):
        allowed, banned = guide.constraint()
        if allowed is None and banned is None:
            return produced
        token = choose(allowed, banned)
        assert (allowed is None or token in allowed) and (banned is None or token not in banned)
        produced += table.bytes_of[token]
        guide.advance(token)
    raise AssertionError("the guide never finished")


def test_healed_indentation_comes_back_exactly_and_never_deeper(table):
    healed = b"\n            "
    allowed, banned = HealingGuide(table, healed).constraint()
    assert banned is None and allowed
    for token in allowed:
        piece = table.bytes_of[token]
        assert healed.startswith(piece) or (piece.startswith(healed) and not piece[len(healed) :][:1].isspace())
    # The natural code tokenization: 11 spaces, then " return" (the old answer " return" was one space too many).
    eleven, word = table.id_of_bytes[b"\n           "], table.id_of_bytes[b" return"]
    assert eleven in allowed
    produced = _walk(table, healed, lambda allowed, banned: eleven if eleven in (allowed or []) else word)
    assert produced == healed[:-1] + b" return"


def test_after_an_exact_heal_on_whitespace_no_whitespace_may_follow(table):
    healed = b" "
    guide = HealingGuide(table, healed)
    guide.advance(table.id_of_bytes[b" "])
    allowed, banned = guide.constraint()
    assert allowed is None and set(banned) == set(table.ids_starting_with_whitespace)
    assert table.id_of_bytes[b" "] in banned and table.id_of_bytes[b"\n"] in banned
    guide.advance(table.id_of_bytes[b"x"])
    assert guide.done and guide.constraint() == (None, None)


def test_a_partial_word_heal_allows_any_continuation(table):
    allowed, _ = HealingGuide(table, b" o").constraint()
    assert table.id_of_bytes[b" object"] in allowed and table.id_of_bytes[b" "] in allowed
    assert all(b" o".startswith(table.bytes_of[t]) or table.bytes_of[t].startswith(b" o") for t in allowed)


def test_prompt_budget_clamps_an_oversized_cap_with_one_log_line(caplog):
    with caplog.at_level(logging.WARNING, logger="model_runtime.prompt"):
        first = prompt_budget(512, 1024)
        second = prompt_budget(512, 1024)
    assert first == second and first.max_new_tokens == 256 and first.prompt_tokens == 512 - 256 - 3
    assert len([r for r in caplog.records if "does not fit" in r.getMessage()]) == 1
    assert prompt_budget(512, 64).prompt_tokens == 512 - 64 - 3
    info = ModelInfo("m", "cpu", "fp32", "none", 2048, "spm", ("a", "b", "c"), 0)
    assert info.prompt_budget(100) == prompt_budget(2048, 100)


def test_a_large_cap_keeps_the_prefix(tokenizer, table):
    """Before: maxNewTokens 1024 on a 512-token model left 0 prefix tokens."""
    builder = _builder(tokenizer, table)
    prefix = "".join(f"value_{i} = compute({i})\n" for i in range(200))
    prompt = builder.build(CompletionRequest(prefix=prefix, suffix="\n", max_new_tokens=1024), "spm")
    assert prompt.max_new_tokens == 256
    assert len(prompt.token_ids) + prompt.max_new_tokens <= 512
    assert len(prompt.token_ids) > 200  # the prefix window was kept, truncated from its head


def test_extra_context_goes_first_and_is_kept_or_dropped_whole(tokenizer, table):
    builder = _builder(tokenizer, table)
    context = "# other.py\ndef helper(x):\n    return x + 1\n"
    request = CompletionRequest(prefix="y = hel", suffix="\n", extra_context=context, max_new_tokens=16)
    prompt = builder.build(request, "spm")
    context_ids = _ids(tokenizer, context)
    assert prompt.token_ids[: len(context_ids)] == context_ids and prompt.context_tokens == len(context_ids)
    assert prompt.token_ids[len(context_ids)] == builder.fim.prefix_id
    # Too big for the budget: dropped whole, the windows keep the whole budget.
    huge = "# big.py\n" + "".join(f"name_{i} = {i}\n" for i in range(400))
    dropped = builder.build(CompletionRequest(prefix="y = 1\n" * 50, suffix="\n", extra_context=huge, max_new_tokens=16), "spm")
    assert dropped.context_tokens == 0 and dropped.truncated_tokens >= len(_ids(tokenizer, huge))
    assert dropped.token_ids[0] == builder.fim.prefix_id


def test_typing_appends_to_the_prompt_with_extra_context(tokenizer, table):
    """SPM with a context block: a keystroke changes only the prompt's end, so the KV of the
    block and the suffix is reusable."""
    builder = _builder(tokenizer, table)
    base = dict(suffix="\n    return total\n", extra_context="# a.py\nTOTAL = 0\n", max_new_tokens=16, token_healing=False)
    a = builder.build(CompletionRequest(prefix="def f():\n    total = su", **base), "spm").token_ids
    b = builder.build(CompletionRequest(prefix="def f():\n    total = sum", **base), "spm").token_ids
    common = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y) if a[: len(b)] != b[: len(a)] else min(len(a), len(b))
    assert common >= len(a) - 2
