"""Each stop rule, at decode time (``check``, the runtime's stop callback) and at the end
(``finish``). ``|`` marks the cursor in the documents below."""

from __future__ import annotations

from lsp_server.context import describe_cursor
from lsp_server.stop_rules import StopRules, overlap_with_rest_of_line, repeated_lines_cut, repeated_run_cut


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
    assert fed == len("a, b)")  # stopped at the first closer that the rest of the line has already
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


def test_a_suggestion_cut_short_ends_where_what_it_opened_is_closed():
    r = rules("x = f(|)\n")
    assert r.finish("g(y, ", truncated=True) == "g"
    assert r.finish("g(y, ") == "g(y, "  # ended by itself (a stop rule): kept as decoded
    assert r.finish("g(y), h[1", truncated=True) == "g(y), h"
    assert r.finish('g("a, b', truncated=True) == "g"  # an open string counts too
    assert r.finish("g(y)", truncated=True) == "g(y)"
    assert r.finish("a, b", truncated=True) == "a, b"  # nothing opened
    inside = rules('x = f("ab|")\n')  # the cursor is in a string: its quote is the line's
    assert inside.finish("cd(e", truncated=True) == "cd(e"  # a bracket in a string is text
    assert inside.finish('cd" + g(e', truncated=True) == "cd"  # its own quote ended the string
    end_of_line = rules("x = f(|\n")  # no text after the cursor: a partial call is fine there
    assert end_of_line.finish("g(y, ", truncated=True) == "g(y,"


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


def rules_for(document: str, language_id: str) -> StopRules:
    offset = document.index("|")
    return StopRules(describe_cursor(document.replace("|", ""), offset), language_id)


def shown(r: StopRules, generated: str) -> str:
    kept, _ = decode(r, generated)
    return r.finish(kept)


def test_mid_line_the_suggestion_stops_where_the_rest_of_the_line_begins():
    r = rules("        return issubclass(|, cls.__bases__[0])\n")
    kept, fed = decode(r, "type, type)\n")
    assert r.finish(kept) == "type"
    assert fed == len("type,")  # stopped while decoding, at the rest's first character


def test_mid_line_a_closer_the_rest_already_has_ends_the_suggestion():
    assert shown(rules("class Option(|Parameter):\n"), "Exception):\n") == "Exception"
    assert shown(rules("total = compute(|) + 1\n"), "a, (b + c)) + 1\n") == "a, (b + c)"
    assert shown(rules("items = [f(|), 2]\n"), "x), g(y)]") == "x"


def test_mid_line_a_word_the_rest_begins_with_is_not_repeated():
    assert shown(rules("x = |value + 1\n"), "self.value + 1\n") == "self."
    assert shown(rules("x = |value + 1\n"), "value + 1\n") == ""


def test_brackets_and_quotes_inside_strings_are_not_brackets():
    assert shown(rules('f = open("|")\n'), 'data.txt")\n') == "data.txt"
    assert shown(rules("log(|)\n"), '"(", x)\n') == '"(", x'
    assert shown(rules('print("hello |world")\n'), 'dear world")') == "dear "
    assert shown(rules("call(|)  # note)\n"), "a)") == "a"


def test_a_completed_line_never_has_more_unmatched_closers():
    r = rules("value = (|) + 1\n")
    for generated in ["a]", "a}) + 1", "a))"]:
        text = shown(r, generated)
        line = "value = (" + text + ") + 1"
        assert line.count("(") >= line.count(")") and "]" not in text and "}" not in text


def test_at_the_end_of_a_line_brackets_may_close_freely():
    assert shown(rules("total = compute(a, |\n"), "b)\n") == "b)"


def test_a_loop_inside_a_line_is_cut_to_its_first_occurrence():
    r = rules("values = [|\n")
    kept, fed = decode(r, "159, 159, 159, 159, 159, 159, 159")
    assert r.finish(kept) == "159,"
    assert fed < len("159, 159, 159, 159, ")
    r = rules("    def __init__(|\n")
    text = shown(r, "self.nargs, param=self.nargs, param=self.nargs, param=self.nargs")
    assert text.count("self.nargs") == 1
    assert repeated_run_cut("a = [0, 1, 2, 3]") is None and repeated_run_cut("x.y, x.z") is None


def test_brace_languages_end_the_block_at_its_closing_brace():
    generated = "return a + 1;\n}\n\nfunction g() {\n  return 2;\n}\n"
    r = rules_for("function f(a) {\n  |\n}\n", "javascript")
    assert shown(r, generated) == "return a + 1;"  # the suffix has the brace already
    r = rules_for("function f(a) {|", "typescript")
    assert shown(r, "\n  return a + 1;\n}\n\nfunction g() {\n") == "\n  return a + 1;\n}"
    r = rules_for("int f(int a) {\n    if (a) {\n        |\n    }\n}\n", "java")
    assert shown(r, "return 1;\n    }\n    return 0;\n") == "return 1;"
    # Braces inside strings and comments do not count.
    r = rules_for("function f(a) {|", "javascript")
    assert shown(r, '\n  const s = "}"; // }\n  return s;\n}\nmore') == '\n  const s = "}"; // }\n  return s;\n}'


def test_python_keeps_its_indentation_rules():
    r = rules_for("def f(x):\n    |\n", "python")
    assert shown(r, "y = {x: 1}\n    return y\n\ndef g():\n") == "y = {x: 1}\n    return y"


def test_the_headless_command_names_the_language_from_the_file_name():
    from lsp_server.languages import language_id_for_path, language_of

    assert language_id_for_path("src/app.TSX") == "typescriptreact" and language_of("typescriptreact").braces
    assert language_id_for_path("tool.py") == "python" and not language_of("python").braces
    assert language_id_for_path("Makefile") == "" and language_id_for_path("notes.unknown") == ""
