"""Context windows: budgets hold, edges are line-aligned, typing keeps the prompt append-only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsp_server.context import (
    TokenCounter,
    describe_cursor,
    extract_windows,
    plan_budget,
    window_reach_chars,
)
from lsp_server.documents import Document
from tests.fakes import fake_tokens

COUNTER = TokenCounter(lambda text: len(fake_tokens(text)))


def document(lines: int = 300) -> str:
    return "".join(f"def helper_{i}(value):\n    return value * {i} + offset_{i % 7}\n" for i in range(lines))


def type_text(text: str, offset: int, typed: str, budget, counter=COUNTER):
    """Windows after each typed character: [(windows, offset)]."""
    out = []
    for char in typed:
        text, offset = text[:offset] + char + text[offset:], offset + 1
        out.append((extract_windows(text, offset, budget, counter), text, offset))
    return out


def is_line_start(text: str, index: int) -> bool:
    return index == 0 or text[index - 1] in "\r\n"


def test_small_documents_are_sent_whole():
    text = "import os\n\ndef f():\n    return 1\n"
    windows = extract_windows(text, 20, plan_budget(1981, 0.75), COUNTER)
    assert (windows.prefix, windows.suffix) == (text[:20], text[20:])


def test_windows_fit_the_budget_and_start_on_line_starts():
    text = document()
    budget = plan_budget(221, 0.75)
    offset = text.index("def helper_150")
    windows = extract_windows(text, offset, budget, COUNTER)
    total = budget.prefix_tokens + budget.suffix_tokens
    assert windows.prefix_tokens + windows.suffix_tokens <= total
    assert windows.suffix_tokens <= budget.suffix_tokens
    assert windows.prefix_tokens == len(fake_tokens(windows.prefix))
    assert is_line_start(text, windows.prefix_start)
    assert windows.suffix_end == len(text) or text[windows.suffix_end - 1] == "\n"
    assert windows.prefix_tokens > budget.prefix_tokens * 0.6  # coarse, not wasteful


def test_short_suffix_gives_its_budget_to_the_prefix():
    text = document()
    budget = plan_budget(221, 0.75)
    windows = extract_windows(text, len(text) - 1, budget, COUNTER)
    assert windows.prefix_tokens > budget.prefix_tokens


def test_typing_is_append_only_and_the_window_jumps_coarsely():
    text = document()
    budget = plan_budget(221, 0.75)
    offset = text.index("def helper_150")
    typed = "def typed_function(argument):\n    result = argument + 1\n    return result\n" * 4
    before = extract_windows(text, offset, budget, COUNTER)
    jumps = 0
    for windows, _, _ in type_text(text, offset, typed, budget):
        assert windows.suffix == before.suffix  # the suffix never changes while typing
        if windows.prefix_start == before.prefix_start:
            old, new = fake_tokens(before.prefix), fake_tokens(windows.prefix)
            # only the tail changes: all old tokens but possibly the last one stay in place
            assert new[: len(old) - 1] == old[:-1]
            assert windows.prefix.startswith(before.prefix)
        else:
            assert windows.prefix_start > before.prefix_start  # it only moves forward
            jumps += 1
        before = windows
    typed_tokens = len(fake_tokens(typed))
    assert jumps >= 1
    # each jump buys about step_chars of typing; allow slack for uneven anchor spacing
    assert jumps <= 2 * len(typed) // budget.step_chars + 2, (jumps, typed_tokens)


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab c(),:=\t😀é中", max_size=30), min_size=1, max_size=120),
    line_index=st.integers(min_value=0, max_value=119),
    typed=st.text(alphabet="xyz (),\n", min_size=1, max_size=12),
    crlf=st.booleans(),
)
def test_property_one_keystroke_changes_only_the_tail(lines, line_index, typed, crlf):
    eol = "\r\n" if crlf else "\n"
    text = eol.join(lines)
    line_index = min(line_index, len(lines) - 1)
    offset = sum(len(line) + len(eol) for line in lines[:line_index]) + len(lines[line_index])
    budget = plan_budget(77, 0.75)
    before = extract_windows(text, offset, budget, COUNTER)
    for windows, _current, _ in type_text(text, offset, typed.replace("\n", eol), budget):
        assert windows.prefix_tokens <= budget.prefix_tokens + budget.suffix_tokens - windows.suffix_tokens
        assert windows.suffix == before.suffix
        assert "\r" not in windows.prefix + windows.suffix  # line breaks are normalized
        if windows.prefix_start == before.prefix_start:
            old, new = fake_tokens(before.prefix), fake_tokens(windows.prefix)
            assert new[: max(0, len(old) - 1)] == old[:-1]
        else:
            assert windows.prefix_start > before.prefix_start
        before = windows


def test_real_bpe_tokenizer_changes_only_the_last_tokens(tiny_tokenizer):
    count = lambda text: len(tiny_tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    counter = TokenCounter(count)
    text = document(120)
    budget = plan_budget(221, 0.75)
    offset = text.index("def helper_80")
    before = extract_windows(text, offset, budget, counter)
    stable = 0
    for windows, _, _ in type_text(text, offset, "def typed(value):\n    return value\n", budget, counter):
        assert windows.prefix_tokens + windows.suffix_tokens <= budget.prefix_tokens + budget.suffix_tokens
        if windows.prefix_start == before.prefix_start:
            stable += 1
            old = tiny_tokenizer.encode(before.prefix, add_special_tokens=False)
            new = tiny_tokenizer.encode(windows.prefix, add_special_tokens=False)
            # BPE may re-split the last few tokens (trailing spaces before a typed character);
            # everything before them stays, so its KV is reused
            common = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
            assert common >= len(old) - 3
        before = windows
    assert stable >= 30


@pytest.mark.parametrize(
    "text, mode, block_indent, closer_indent",
    [
        ("x = foo(|)\n", "single", 0, None),  # text after the cursor
        ("def f(a, b|\n", "single", 0, None),  # end of a line that opens nothing
        ("def f():\n    |\n", "multi", 4, None),  # empty (indented) line
        ("def f():|\n", "multi", 1, 0),  # after a block opener
        ("    if x {|\n", "multi", 5, 4),
        ("x = 1|   \n", "single", 0, None),
    ],
)
def test_cursor_mode(text, mode, block_indent, closer_indent):
    offset = text.index("|")
    shape = describe_cursor(text.replace("|", ""), offset)
    assert (shape.mode, shape.block_indent, shape.closer_indent) == (mode, block_indent, closer_indent)


def test_cursor_shape_knows_the_rest_of_line_and_next_line_with_crlf():
    text = "def f(x):\r\n    return g(x|)\r\n\r\n    y = 2\r\n"
    offset = text.index("|")
    shape = describe_cursor(text.replace("|", ""), offset, eol="\r\n")
    assert shape.line_before == "    return g(x"
    assert shape.line_after == ")"
    assert shape.next_line == "    y = 2"


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab c(),:=\t😀é中", max_size=60), min_size=1, max_size=400),
    where=st.floats(0, 1),
    context_tokens=st.sampled_from([64, 128, 256]),
)
def test_an_excerpt_gives_the_same_windows_as_the_whole_document(lines, where, context_tokens):
    """The server passes an excerpt of a huge document (Document.excerpt), not its text."""
    text = "\n".join(lines)
    offset = int(where * len(text))
    budget = plan_budget(context_tokens, 16, 0.75)
    whole = extract_windows(text, offset, budget, COUNTER)
    excerpt, base = Document("file:///a.py", text).excerpt(offset, window_reach_chars(context_tokens))
    assert extract_windows(excerpt, offset - base, budget, COUNTER, base) == whole
