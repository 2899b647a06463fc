"""Each stop rule, at decode time (``check``, the runtime's stop callback) and at the end
(``finish``). ``|`` marks the cursor in the documents below."""

from __future__ import annotations

from lsp_server.context import describe_cursor
from lsp_server.stop_rules import StopRules, overlap_with_rest_of_line, repeated_lines_cut


def rules(document: str) -> StopRules:
    offset = document.index("|")
    return StopRules(describe_cursor(document.replace("|", ""), offset))


def decode(rules: StopRules, text: str) -> tuple[str, int]:
    """Feed ``text`` one character at a time as the runtime would; (kept text, characters fed)."""
    for fed in range(1, len(text) + 1):
        cut = rules.check(text[:fed])
        if cut is not None:
            return text[:cut], fed
    return text, len(text)


def test_single_line_mode_stops_at_the_line_break_while_decoding():
    r = rules("total = compute(|)\n")
    kept, fed = decode(r, "alpha, beta\n    more = 1\n")
    assert kept == "alpha, beta"
    assert fed == len("alpha, beta\n")  # nothing decoded past the line break


def test_multi_line_stops_at_a_dedent_below_the_cursor_block():
    r = rules("def f(x):\n    |\n")
    kept, fed = decode(r, "y = x + 1\n    return y\n\ndef g():\n    pass\n")
    assert kept == "y = x + 1\n    return y\n"
    assert fed == len("y = x + 1\n    return y\n\nd")  # stopped at the first character of `def`
    assert r.finish(kept) == "y = x + 1\n    return y"


def test_after_a_block_opener_the_block_is_deeper_and_a_closing_line_is_kept():
    r = rules("function f(a) {|\n")
    kept, _ = decode(r, "\n  return a + 1;\n}\nfunction g() {}\n")
    assert kept == "\n  return a + 1;\n}"
    python = rules("def f(a):|\n")
    kept, _ = decode(python, "\n    return a\ndef g():\n")
    assert kept == "\n    return a"


def test_a_generated_line_equal_to_the_next_suffix_line_stops_decoding():
    r = rules("def f(x):\n    |\n    return y\n")
    kept, _ = decode(r, "y = x * 2\n    return y\n    return y\n")
    assert r.finish(kept) == "y = x * 2"
    # the whole cursor line equal to the next line: nothing to add
    same = rules("def f(x):\n    |\n    return y\n")
    assert same.finish(decode(same, "return y\n")[0]) == ""


def test_the_duplicated_rest_of_line_is_dropped():
    r = rules("print(compute(|))\n")
    kept, fed = decode(r, "a, b))\nnext")
    assert r.finish(kept) == "a, b"
    assert fed == len("a, b))")  # stopped as soon as the rest of the line was repeated
    colon = rules("if check(|):\n")
    assert colon.finish("value):") == "value"
    assert colon.finish("value)") == "value"  # a partial overlap of closing brackets
    quote = rules('name = "|"\n')
    assert quote.finish('hello"') == "hello"


def test_balanced_brackets_that_the_line_needs_are_kept():
    r = rules("x = f(|)\n")
    assert r.finish("g(y)") == "g(y)"  # its own pair; the line's ")" closes f(
    assert r.finish("g(y))") == "g(y)"
    assert overlap_with_rest_of_line("g(y)", ")") == 0


def test_empty_and_whitespace_only_results_are_dropped():
    assert rules("x = |\n").finish("") == ""
    assert rules("def f():\n    |\n").finish("   \n  \n") == ""
    assert rules("x = 1|\n").finish("\nmore") == ""  # single line: only a line break


def test_repeated_line_loops_are_cut_to_their_first_occurrence():
    r = rules("def f(items):\n    |\n")
    loop = "total = 0\n    items.append(1)\n    items.append(1)\n    items.append(1)\n    items.append(1)\n"
    kept, fed = decode(r, loop)
    assert r.finish(kept) == "total = 0\n    items.append(1)"
    assert fed < len(loop)
    block = "a = 1\n    b = 2\n    a = 1\n    b = 2\n    c = 3\n"
    assert rules("def f():\n    |\n").finish(decode(rules("def f():\n    |\n"), block)[0]) == "a = 1\n    b = 2"


def test_repeated_lines_cut_ignores_punctuation_and_short_repeats():
    assert repeated_lines_cut(["x", "}", "}", "}"]) is None
    assert repeated_lines_cut(["a", "b", "b"]) is None
    assert repeated_lines_cut(["a", "b", "b", "b"]) == 2


def test_trailing_whitespace_of_multi_line_results_is_trimmed():
    r = rules("def f():\n    |\n")
    assert r.finish("x = 1   \n    return x  \n\n") == "x = 1\n    return x"
