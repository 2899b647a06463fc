"""The per-keystroke tokenizer cache gives the ids a whole-text tokenization gives: for cut-out
windows of held-out code, for a typing session (where the head really is reused), and for a
tokenizer whose rules it cannot vouch for (then only exact texts are cached)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from model_runtime.token_cache import MIN_HEAD_CHARS, CachedTokenizer, split_is_exact, split_point
from training.corpus import load_heldout_documents

BUNDLED = Path(__file__).resolve().parents[2] / "model_runtime" / "bundled" / "tiny"


@pytest.fixture(scope="module")
def bundled_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(BUNDLED)


@pytest.fixture(scope="module")
def encode(bundled_tokenizer):
    return lambda text: bundled_tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


def test_the_bundled_and_the_test_tokenizers_qualify_for_the_split(bundled_tokenizer, encode, engine):
    assert split_is_exact(bundled_tokenizer, encode)
    assert engine._cached_tokenize.split  # the random test model's tokenizer


def test_windows_of_held_out_code_tokenize_as_a_whole(encode):
    cached = CachedTokenizer(encode, split=True)
    rng = random.Random(0)
    documents = load_heldout_documents()[:40]
    checked = 0
    for document in documents:
        for _ in range(15):
            start = rng.randrange(len(document.text))
            text = document.text[start : start + rng.randrange(1, 3000)]
            assert cached(text) == encode(text), text[-80:]
            checked += 1
    assert checked == 600


def test_typing_reuses_the_head_and_matches_every_keystroke(encode):
    document = next(d for d in load_heldout_documents() if len(d.text) > 4000)
    cut = document.text.index("\n", 2000) + 1
    line = document.text[cut : document.text.index("\n", cut)] + "\n    x = (a, 'b')  # done\n\tpass  \n"
    cached = CachedTokenizer(encode, split=True)
    for typed in range(len(line) + 1):
        text = document.text[:cut] + line[:typed]
        assert cached(text) == encode(text)
    assert cached.head_hits > len(line) // 2  # the head was tokenized again only at new lines


def test_exact_hits_return_a_fresh_list(encode):
    cached = CachedTokenizer(encode, split=True)
    first = cached("def f(x):\n    return x\n")
    first.append(-1)
    assert cached("def f(x):\n    return x\n") == encode("def f(x):\n    return x\n")
    assert cached.hits == 1


def test_split_point_needs_a_non_space_before_the_line_break():
    head = "a" * MIN_HEAD_CHARS
    assert split_point(head + "x\n  y") == MIN_HEAD_CHARS + 1
    assert split_point(head + "x \n  y") == 0  # a trailing space joins the whitespace run
    assert split_point("x\n" * 10) == 0  # too short to split


class _OtherPreTokenizer:
    class backend_tokenizer:
        normalizer = None
        pre_tokenizer = object()


def test_a_tokenizer_with_other_rules_gets_no_split(encode):
    assert not split_is_exact(_OtherPreTokenizer(), encode)
    assert not split_is_exact(object(), encode)
