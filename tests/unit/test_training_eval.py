"""The single-line infilling benchmark's example construction and context fitting."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_infill.py"
_spec = importlib.util.spec_from_file_location("eval_infill", _PATH)
eval_infill = importlib.util.module_from_spec(_spec)
sys.modules["eval_infill"] = eval_infill  # dataclasses look their module up there
_spec.loader.exec_module(eval_infill)

TEXT = "import os\n\ndef f(x):\n    y = x + 1\n    return y\n"


def test_example_removes_one_line_between_its_newlines():
    lines = TEXT.split("\n")
    example = eval_infill.make_example("t.py", lines, 3)
    assert example.prefix == "import os\n\ndef f(x):\n"
    assert example.middle == "    y = x + 1"
    assert example.suffix == "\n    return y\n"
    assert example.prefix + example.middle + example.suffix == TEXT
    first = eval_infill.make_example("t.py", lines, 0)
    assert first.prefix == "" and first.middle == "import os"
    assert eval_infill.non_blank_indices(lines) == [0, 2, 3, 4]


def test_stop_at_newline():
    assert eval_infill.stop_at_newline("x = 1\n  y") == 5
    assert eval_infill.stop_at_newline("x = 1") is None


@pytest.mark.parametrize("index", [5, 30, 95])
def test_fit_keeps_whole_lines_nearest_the_removed_one(index):
    lines = [f"value_{i} = {i} * 2" for i in range(100)]
    example = eval_infill.make_example("t.py", lines, index)
    count = lambda text: len(text.split())  # noqa: E731  -- a stand-in tokenizer: one token per word
    context = 150
    fitted = eval_infill.fit_example(example, context, count)
    budget = context - eval_infill.MAX_NEW_TOKENS - 5
    assert count(fitted.prefix) + count(fitted.suffix) <= budget
    assert example.prefix.endswith(fitted.prefix) and example.suffix.startswith(fitted.suffix)
    assert fitted.prefix == "" or fitted.prefix.endswith("\n") and (fitted.prefix == example.prefix or example.prefix[-len(fitted.prefix) - 1] == "\n")
    assert fitted.suffix == "" or fitted.suffix.startswith("\n")
    assert fitted.suffix == example.suffix or example.suffix[len(fitted.suffix)] == "\n"
    # The budget is used: adding the next line on either side would not fit or does not exist.
    assert count(fitted.prefix) + count(fitted.suffix) > budget - 8


def test_score_counts_stripped_hits_per_order_and_writes_every_answer():
    import io
    import json

    class Runner:  # PSM answers right (with extra spaces), SPM answers the line above
        context_tokens = 10_000

        def count_tokens(self, text):
            return len(text.split())

        def complete_line(self, prefix, suffix, order):
            return "  " + expected_of[prefix] + " " if order == "psm" else prefix.rstrip("\n").split("\n")[-1]

    lines = TEXT.split("\n")
    examples = [eval_infill.make_example("t.py", lines, i) for i in (2, 3, 4)]
    expected_of = {example.prefix: example.middle.strip() for example in examples}
    answers = io.StringIO()
    figures = eval_infill.score(Runner(), examples, "toy", answers)
    assert (figures["examples"], figures["psm"], figures["spm"], figures["empty"]) == (3, 1.0, 0.0, 0.0)
    rows = [json.loads(line) for line in answers.getvalue().splitlines()]
    assert [row["expected"] for row in rows] == ["def f(x):", "    y = x + 1", "    return y"]
    assert rows[1]["spm"] == "def f(x):" and rows[0]["dataset"] == "toy"
