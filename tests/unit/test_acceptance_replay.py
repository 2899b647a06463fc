"""The acceptance benchmark's own judgements: brackets, loops, cursor situations, case choice,
and one replay through the real server with the scripted engine."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from lsp_server.engine_adapter import FAKE_ENGINE_ENV
from tests.protocol.harness import FAKES, fake_model

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "acceptance_replay.py"
_spec = importlib.util.spec_from_file_location("acceptance_replay", _PATH)
replay = importlib.util.module_from_spec(_spec)
sys.modules["acceptance_replay"] = replay  # dataclasses look their module up there
_spec.loader.exec_module(replay)


@pytest.mark.parametrize(
    "text, balanced",
    [
        ("return issubclass(type, cls.__bases__[0])", True),
        ("return issubclass(type, type), cls.__bases__[0])", False),
        ("class Option(Exception):):", False),
        ("f(a, [b, {c: d}])", True),
        ("f(a, [b, {c: d])}", False),  # crossed
        ("f(a", False),
        ("print(')', \"(\", '''(\n''')", True),  # brackets in strings do not count
        ("x = f(1)  # an unclosed ( in a comment", True),
        ("s = 'it\\'s (' + g(x)", True),  # an escaped quote does not end the string
        ("", True),
    ],
)
def test_bracket_balance_skips_strings_and_comments(text, balanced):
    assert replay.bracket_balanced(text) is balanced


def test_bracket_error_kind_tells_extra_closers_from_open_brackets():
    assert replay.bracket_error_kind("f(x))") == "extra closer"
    assert replay.bracket_error_kind("f(x, [1)") == "extra closer"
    assert replay.bracket_error_kind("f(x, [1") == "left open"
    assert replay.bracket_error_kind("f(x)") == "balanced"


def test_first_parens_finds_the_first_call_and_its_own_closer():
    line = "    self.assertEqual(f('(', g(1)), [2])  # (x"
    start, end = replay.first_parens(line)
    assert line[start] == "(" and line[start + 1 : end] == "f('(', g(1)), [2]"
    assert replay.first_parens("x = ')' + '('") is None  # only inside strings
    assert replay.first_parens("call(a,") is None  # closed on a later line
    assert replay.first_parens("f(a, [b)]") is None


@pytest.mark.parametrize(
    "text, loop",
    [
        ("159, 159, 159, ", True),
        ("self.nargs, param=self.nargs, param=self.nargs, param=self.nargs", True),
        ("abab" + "ab", True),
        ("x = [1, 2, 3]", False),
        ("----------", False),  # no letter or digit in the unit
        ("a = 1\na = 1\na = 1", False),  # repeated lines are not an in-line loop
        ("aaa", False),  # units are two characters or more
        ("159, 159, ", False),  # twice is not a loop
    ],
)
def test_repetition_loop(text, loop):
    assert replay.has_repetition_loop(text) is loop


@pytest.mark.parametrize(
    "before, situation",
    [
        ("", "line start"),
        ("        ", "after indentation"),
        ("    f(", "after opener"),
        ("    x = [", "after opener"),
        ("    self.", "after dot"),
        ("    return ", "after space"),
        ("    ret", "mid-word"),
        ("    x = a +", "after other"),
    ],
)
def test_cursor_situation(before, situation):
    assert replay.cursor_situation(before) == situation


def test_next_keystroke_brings_indentation_with_enter():
    assert replay.next_keystroke("\n        return x", "    if x:", auto_indent=True) == "\n        "
    assert replay.next_keystroke("    return x", "", auto_indent=True) == "    "
    assert replay.next_keystroke("\n        return x", "    if x:", auto_indent=False) == "\n"
    assert replay.next_keystroke("return x", "        ", auto_indent=True) == "r"
    assert replay.next_keystroke(" x", "    return", auto_indent=True) == " "  # mid-line spaces are keystrokes


SOURCE = '''"""A module.

with a docstring that is no code
"""
import os


def add(first, second):
    total = first + second
    print("total", total)
    return total


class Box:
    def __init__(self, value):
        self.value = value
        self.size = len(value)
'''


def test_cases_are_code_lines_and_deterministic():
    cases = replay.choose_cases("m.py", SOURCE, regions=2, indents=3, brackets=3)
    lines = SOURCE.split("\n")
    assert cases == replay.choose_cases("m.py", SOURCE, regions=2, indents=3, brackets=3)
    assert cases.regions and all(not lines[i].startswith(("with a", '"""')) for i in cases.regions)
    for first in cases.regions:
        assert all(lines[i].strip() for i in range(first, first + replay.REGION_LINES))
    assert all(lines[i].startswith((" ", "\t")) for i in cases.indent_lines)
    for index in cases.bracket_lines:
        start, end = replay.first_parens(lines[index])
        assert lines[index][start + 1 : end].strip()
    assert replay.choose_cases("m.py", "x = (\n", 1, 1, 1) is None  # does not tokenize
    assert replay.spread([1, 2, 3, 4, 5, 6, 7, 8], 2, 3) == [3, 7]
    assert replay.spread([1, 2], 3, 5) == [1]


def test_side_spec_parses_name_tree_and_settings(tmp_path):
    (tmp_path / "lsp_server").mkdir()
    (tmp_path / "lsp_server" / "__main__.py").write_text("")
    side = replay.parse_side(f'after={tmp_path}:{{"minConfidence": -1.5, "x": "a:b"}}')
    assert side.name == "after" and side.tree == tmp_path and side.settings == {"minConfidence": -1.5, "x": "a:b"}
    assert replay.parse_side(f"before={tmp_path}").settings == {}
    for bad in ("nothing", f"x={tmp_path}:[1]", f"x={tmp_path}:{{", f"x={tmp_path / 'missing'}"):
        with pytest.raises(argparse.ArgumentTypeError):
            replay.parse_side(bad)


def test_replay_through_the_real_server_accepts_right_prefixes_and_keeps_the_text_in_sync(monkeypatch):
    """The scripted engine proposes the right rest of two lines and a wrong "zz" elsewhere.
    (Only what the fixes of issue 13 leave alone: no whitespace or unbalanced suggestions.)"""
    monkeypatch.setenv(FAKE_ENGINE_ENV, str(FAKES))
    rules = [{"after": "    total = ", "text": "first + second"}, {"after": "print(", "text": '"total", total'}]
    side = replay.Side("fake", replay.REPO, {"model": fake_model(rules=rules, default="zz")})
    cases = replay.FileCases("m.py", SOURCE, regions=(8,), indent_lines=(9,), bracket_lines=(9,))
    server = replay.SideServer(side, {})
    try:
        server.wait_ready()
        replay.replay_file(server, cases, None)
        stats = server.stats()
    finally:
        server.stop()
    t = server.tally
    region = "\n".join(SOURCE.split("\n")[8:11])[4:]  # the cursor line keeps its indentation
    assert t.desynced_files == 0
    assert t.accepted == 2 and t.saved_chars == len("first + second") + len('"total", total')
    assert t.typed_chars + t.saved_chars == len(region)
    assert t.requests == t.typed_chars - region.count("\n") * 4 + t.accepted  # Enter brings 4 spaces in the same edit
    assert stats["accepted"] == 2  # santacoder.accepted reached the server
    assert t.indent_cases == 1 and t.indent_errors == 0
    assert t.bracket_cases == 1 and t.bracket_errors == 0 and t.bracket_exact == 1
