"""Load: a fast typist and a burst of requests against the real server and the tiny model.

The long version with figures for the notes is ``python benchmarks/load_replay.py`` (minutes of
typing); here the same replay runs for a short while and its invariants are checked: nothing
unanswered, nothing failed, memory and caches within their budgets, queues drained, and the
newest request of a 1,000-request burst answered with what a lone request there gets.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from lsprotocol import types

from tests.reliability.client import BackgroundClient

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "load_replay.py"
_spec = importlib.util.spec_from_file_location("load_replay", _PATH)
load_replay = importlib.util.module_from_spec(_spec)
sys.modules["load_replay"] = load_replay
_spec.loader.exec_module(load_replay)

TYPING_SECONDS = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "20"))


def test_a_fast_typist_then_a_burst_keep_the_server_bounded_and_answering():
    figures = load_replay.run_load("tiny", seconds=TYPING_SECONDS, keys_per_second=20, burst=1000, progress=False)
    print(load_replay.format_report(figures))
    assert figures.alive
    assert figures.keystrokes >= 0.8 * TYPING_SECONDS * 20, figures.keystrokes  # the replay really ran at speed
    assert figures.requests == figures.keystrokes
    assert figures.unanswered == 0 and figures.other_errors == 0
    assert figures.answered + figures.cancelled_by_client == figures.requests
    assert figures.with_items > 0  # the model did answer while being flooded

    burst = figures.burst
    assert set(burst["outcomes"]) <= {"items", "empty"} and sum(burst["outcomes"].values()) == 1000, burst["outcomes"]
    assert burst["newestText"] == burst["aloneText"], burst  # the newest request got the real answer
    assert burst["modelCalls"] <= 50, burst  # older requests were superseded, not decoded one by one

    caches, queues = figures.server["caches"], figures.server["queues"]
    assert caches["kvBytes"] <= caches["kvBudgetBytes"]
    assert caches["exactEntries"] <= caches["exactCapacity"] and caches["shownDocuments"] <= caches["shownCapacity"]
    assert queues["inFlight"] == 0 and queues["decodeJobs"] == 0, queues  # everything drained
    assert figures.server["counts"]["errors"] == 0
    grown = figures.memory_mib["end"] - figures.memory_mib["afterLoad"]
    assert grown < 200, figures.memory_mib  # measured about 20 MiB; a leak per request would show here


def test_many_documents_stay_within_a_small_kv_budget():
    client = BackgroundClient({"model": "tiny", "debounceMs": 0, "kvCacheMb": 1, "maxNewTokens": 8, "maxNewTokensSingleLine": 8})
    try:
        assert client.wait_for_model() == "ready"
        for k in range(24):
            uri = f"file:///load/many{k}.py"
            text = f"def function_{k}(value):\n" + "    total = value * 2\n" * (20 + k) + "    return "
            client.notify("textDocument/didOpen", types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))  # fmt: skip
            lines = text.split("\n")
            client.request("textDocument/inlineCompletion", load_replay._inline(uri, len(lines) - 1, len(lines[-1])), 60)
            caches = client.stats()["caches"]
            assert caches["kvBytes"] <= caches["kvBudgetBytes"] == 1 << 20, caches
        assert caches["kvSlots"] >= 1  # something is cached; older documents were evicted
        assert client.stats()["modelCalls"] == 24
    finally:
        client.close()
