"""The runtime keeps the extra-context block's KV while the user types after it."""

from model_runtime import CompletionRequest

BLOCK = "# pkg/helpers.py\ndef scale_reading(reading, factor):\n    return reading * factor\n\n"


def test_typing_reuses_the_blocks_kv_and_prefills_only_the_new_tokens(engine):
    base = dict(suffix="\n    return total\n", extra_context=BLOCK, max_new_tokens=2, cache_key="a.py", token_healing=False)
    prefix = "def report(values):\n    total = scale_reading(values[0], 2"
    first = engine.complete(CompletionRequest(prefix=prefix, **base))
    block_tokens = engine.count_tokens(BLOCK)
    assert first.stats.context_tokens == block_tokens
    assert first.stats.reused_tokens == 0
    for typed in (")", ") +", ") + 1"):
        result = engine.complete(CompletionRequest(prefix=prefix + typed, **base))
        assert result.stats.context_tokens == block_tokens
        assert result.stats.reused_tokens >= block_tokens + engine.count_tokens(base["suffix"])
        assert result.stats.prefilled_tokens <= 4


def test_a_changed_block_is_prefilled_again(engine):
    base = dict(prefix="x = scale_reading(", suffix="\n", max_new_tokens=2, cache_key="b.py", token_healing=False)
    engine.complete(CompletionRequest(extra_context=BLOCK, **base))
    changed = engine.complete(CompletionRequest(extra_context=BLOCK.replace("factor", "weight"), **base))
    assert changed.stats.reused_tokens < engine.count_tokens(BLOCK)
