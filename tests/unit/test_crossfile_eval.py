"""The cross-file benchmark's harness plans requests as the server does: with a budget, a
sibling that defines the used name reaches the extra context; with 0, nothing does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from lsp_server.settings import Settings
from tests.fakes import FakeEngine

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "crossfile_eval.py"
_spec = importlib.util.spec_from_file_location("crossfile_eval", _PATH)
crossfile = importlib.util.module_from_spec(_spec)
sys.modules["crossfile_eval"] = crossfile  # dataclasses look their module up there
_spec.loader.exec_module(crossfile)

SIBLING = "".join(f"def scale_reading_{i}(reading, factor):\n    adjusted = reading * factor\n    return adjusted\n\n" for i in range(6))


def example() -> crossfile.Example:
    prefix = "import os\n\n\ndef report(values):\n    first = scale_reading_1(values, 1)\n"
    middle = "    return scale_reading_1(first, 2)"
    return crossfile.Example("pkg/main.py", 5, "scale_reading_1", "pkg/sibling.py", prefix, middle, "\n", (("pkg/sibling.py", SIBLING),))


def test_a_budget_brings_the_defining_sibling_into_the_block_and_zero_brings_nothing():
    harness = crossfile.Harness(FakeEngine(context_tokens=512))
    on = crossfile.score(harness, [example()], 64, Settings())
    off = crossfile.score(harness, [example()], 0, Settings())
    assert (on["with_block"], on["block_defines_name"]) == (1.0, 1.0)
    assert (off["with_block"], off["block_defines_name"]) == (0.0, 0.0)
    assert harness.engine.calls[0].extra_context.startswith("# pkg/sibling.py\ndef scale_reading_")
