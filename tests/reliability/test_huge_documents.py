"""Large documents through the real server: its chunked text stays equal to the client's under
edits anywhere (across chunk boundaries, CRLF, multi-line ranges), and completions in the middle
of a multi-megabyte document work. Speed is measured in benchmarks/load_replay.py --huge-mb."""

from __future__ import annotations

import bisect
import hashlib
import random
import re

from tests.protocol.harness import fake_model
from tests.reliability.rawclient import ServerProcess

RULES = [{"after": "x = ", "text": "42"}]
_BREAK = re.compile(r"\r\n|\r|\n")


def line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in _BREAK.finditer(text)]


def position_of(text: str, starts: list[int], offset: int) -> dict[str, int]:
    """LSP position (UTF-16 columns) of ``offset``; inside a \r\n it is the end of the line."""
    line = bisect.bisect_right(starts, offset) - 1
    if offset > starts[line] and text[offset - 1] == "\r" and text[offset : offset + 1] == "\n":
        offset -= 1
    return {"line": line, "character": len(text[starts[line] : offset].encode("utf-16-le")) // 2}


def offset_of(text: str, starts: list[int], position: dict[str, int]) -> int:
    """What the server must make of ``position``: a column past the line's end is its end."""
    start = starts[position["line"]]
    end = starts[position["line"] + 1] if position["line"] + 1 < len(starts) else len(text)
    while end > start and text[end - 1] in "\r\n":
        end -= 1
    units, index = 0, start
    while index < end and units < position["character"]:
        units += 2 if ord(text[index]) > 0xFFFF else 1
        index += 1
    return index


def test_a_multi_megabyte_document_stays_in_sync_under_edits_anywhere():
    rng = random.Random(19)
    lines = [f"value_{k} = {'é' if k % 7 == 0 else ''}{k}" for k in range(60_000)]
    text = "".join(line + ("\r\n" if k % 5 == 0 else "\n") for k, line in enumerate(lines))  # ~1 MB, 60 chunks
    uri = "file:///w/huge.py"
    with ServerProcess(log_level="WARNING") as server:
        connection = server.connection
        connection.initialize({"model": fake_model(rules=RULES)})
        connection.open(uri, text)
        for version in range(2, 62):
            starts = line_starts(text)
            start = rng.randrange(len(text) + 1)
            end = min(len(text), start + rng.choice([0, 0, 1, 5, 300, 40_000]))  # some cross several chunks
            inserted = rng.choice(["", "a", "\n", "\r\n", "x = \n", "é😀\r", "\n" * 3 + "tail"])
            start_pos, end_pos = position_of(text, starts, start), position_of(text, starts, end)
            start_off = offset_of(text, starts, start_pos)
            end_off = max(start_off, offset_of(text, starts, end_pos))
            text = text[:start_off] + inserted + text[end_off:]
            change = {"range": {"start": start_pos, "end": end_pos}, "text": inserted}
            connection.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]})
        state = connection.request("santacoder/documentState", {"uri": uri})["result"]
        assert (state["length"], state["version"]) == (len(text), 61)
        assert state["sha256"] == hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        middle = text.index("\n", len(text) // 2) + 1
        where = position_of(text, line_starts(text), middle)
        connection.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 62}, "contentChanges": [
            {"range": {"start": where, "end": where}, "text": "x = \n"}]})  # fmt: skip
        answer = connection.inline(uri, where["line"], 4)
        assert [item["insertText"] for item in answer["result"]["items"]] == ["42"]
        assert "Traceback" not in server.stderr
