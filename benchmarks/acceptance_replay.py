"""Acceptance replay: what a user typing held-out Python would be shown, and whether it is right.

    python benchmarks/acceptance_replay.py                      # before=/work/base, after=this tree
    python benchmarks/acceptance_replay.py --quick              # a one-minute smoke run
    python benchmarks/acceptance_replay.py --side before=/work/base --side 'after=/work/main:{"minConfidence": -1.5}'

Every side is a checkout (``--side NAME=TREE[:JSON_SETTINGS]``): its server runs as
``python -m lsp_server`` with cwd and PYTHONPATH set to that tree, over stdio, initialised with
``{"model": "tiny", "debounceMs": 0}`` plus ``--settings`` plus the side's own JSON, and with the
model loaded before the first keystroke. All sides get exactly the same cases; they take turns
file by file (the order flips every file) so that machine noise hits them alike.

On each held-out stdlib file (``training/heldout_files.txt``, in list order, files with too
few usable lines skipped):

- typing replay: regions of 3 code lines are blanked (the cursor line keeps its indentation)
  and typed back one character per ``didChange``, with an Automatic
  ``textDocument/inlineCompletion`` after every edit, waiting for the answer. Enter brings the
  next line's indentation with it, as an editor's auto-indent does (``--no-auto-indent``: every
  space is a keystroke too). A shown (non-blank) answer that is a prefix of what is typed next
  is accepted: it is applied as one ``didChange``, its characters count as saved, and
  ``santacoder.accepted`` is executed, as an editor does. "Shown" counts answers (typing
  through a suggestion shows its remainder again); "distinct" counts suggestion ids.
- indent cases: a statement line blanked to its indentation, cursor at its end. Error: a
  non-empty suggestion that starts with a space or a tab.
- bracket cases: the inside of the line's first ``(...)`` removed (``(``, ``)`` and the rest
  kept), cursor after ``(``. Error: ``head + suggestion + rest`` is not bracket-balanced (strings
  and comments skipped) although the original line was.

Prints one table with a column per side, then where the shown-but-rejected typing suggestions
were offered (cursor situation) and how long they were; ``--json`` writes all figures,
``--details`` one JSON line per shown suggestion and per case.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BASE_TREE = Path("/work/base")
REGION_LINES = 3
MAX_LINE_CHARS = 100
REQUEST_TIMEOUT_S = 120.0
LOAD_TIMEOUT_S = 600.0
DEFAULT_OPTIONS = {"model": "tiny", "debounceMs": 0}
_CLOSERS = {"(": ")", "[": "]", "{": "}"}
SITUATIONS = ("line start", "after indentation", "after opener", "after dot", "after space", "mid-word", "after other")

# -- pure helpers: cases, brackets, loops -------------------------------------------------------


def code_chars(text: str) -> Iterator[tuple[int, str]]:
    """(index, char) of the characters outside string literals and ``#`` comments. A string
    that is not closed ends at the end of its line (one-quote) or of the text (triple)."""
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char == "#":
            newline = text.find("\n", index)
            index = length if newline < 0 else newline
        elif char in "'\"":
            index = _string_end(text, index)
        else:
            yield index, char
            index += 1


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    triple = text.startswith(quote * 3, start)
    index = start + (3 if triple else 1)
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
        elif triple and text.startswith(quote * 3, index):
            return index + 3
        elif not triple and char == quote:
            return index + 1
        elif not triple and char == "\n":
            return index
        else:
            index += 1
    return len(text)


def bracket_balanced(text: str) -> bool:
    """Every ``)]}`` outside strings and comments closes the innermost open bracket of its kind,
    and none is left open."""
    stack: list[str] = []
    for _, char in code_chars(text):
        if char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif char in ")]}" and (not stack or stack.pop() != char):
            return False
    return not stack


def bracket_error_kind(text: str) -> str:
    """``"balanced"``, ``"extra closer"`` (a closer with nothing or something else open) or
    ``"left open"``."""
    stack: list[str] = []
    for _, char in code_chars(text):
        if char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif char in ")]}" and (not stack or stack.pop() != char):
            return "extra closer"
    return "left open" if stack else "balanced"


def first_parens(line: str) -> tuple[int, int] | None:
    """Indices of the line's first ``(`` outside strings and comments and of its matching ``)``
    on the same line; None when there is none or it is not closed there."""
    opened: int | None = None
    stack: list[str] = []
    for index, char in code_chars(line):
        if opened is None:
            if char == "(":
                opened = index
                stack.append(")")
            continue
        if char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif char in ")]}":
            if not stack or stack.pop() != char:
                return None
            if not stack:
                return opened, index
    return None


def has_repetition_loop(text: str, min_unit_chars: int = 2, repeats: int = 3) -> bool:
    """Whether a line of ``text`` holds a unit of ``min_unit_chars`` or more characters, with a
    letter or digit in it, ``repeats`` times back to back (``"159, 159, 159, "``)."""
    for line in text.split("\n"):
        for size in range(min_unit_chars, len(line) // repeats + 1):
            for start in range(len(line) - size * repeats + 1):
                unit = line[start : start + size]
                if line[start + size : start + size * repeats] == unit * (repeats - 1) and any(c.isalnum() for c in unit):
                    return True
    return False


def cursor_situation(line_before: str) -> str:
    """Where the cursor is, from the cursor line's text before it (one of ``SITUATIONS``)."""
    if not line_before:
        return "line start"
    if line_before.isspace():
        return "after indentation"
    last = line_before[-1]
    if last in "([{":
        return "after opener"
    if last == ".":
        return "after dot"
    if last in " \t":
        return "after space"
    if last.isalnum() or last == "_":
        return "mid-word"
    return "after other"


@dataclass(frozen=True)
class LineKinds:
    in_string: frozenset[int]  # 0-based lines covered by a string literal spanning lines
    statement_starts: frozenset[int]  # 0-based lines where a logical line begins


def line_kinds(text: str) -> LineKinds | None:
    """From Python's tokenizer; None when the file does not tokenize."""
    in_string: set[int] = set()
    starts: set[int] = set()
    at_start = True
    skipped = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER)
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING and token.start[0] != token.end[0]:
                in_string.update(range(token.start[0] - 1, token.end[0]))
            if token.type == tokenize.NEWLINE:
                at_start = True
            elif token.type not in skipped:
                if at_start:
                    starts.add(token.start[0] - 1)
                at_start = False
    except (tokenize.TokenError, SyntaxError):
        return None
    return LineKinds(frozenset(in_string), frozenset(starts))


def _is_code(line: str, index: int, kinds: LineKinds) -> bool:
    stripped = line.strip()
    return (
        4 <= len(stripped) <= MAX_LINE_CHARS
        and not stripped.startswith("#")
        and index not in kinds.in_string
        and any(c.isalnum() for c in stripped)
        and line.isascii()  # columns in UTF-16 units equal characters
    )


def spread(candidates: Sequence[int], count: int, min_gap: int) -> list[int]:
    """Up to ``count`` of the sorted ``candidates``, evenly spread, each ``min_gap`` or more
    after the one before."""
    chosen: list[int] = []
    for k in range(count):
        for candidate in candidates[(2 * k + 1) * len(candidates) // (2 * count) :]:
            if not chosen or candidate >= chosen[-1] + min_gap:
                chosen.append(candidate)
                break
    return chosen


@dataclass(frozen=True)
class FileCases:
    path: str
    text: str
    regions: tuple[int, ...]  # first line of each typed region
    indent_lines: tuple[int, ...]
    bracket_lines: tuple[int, ...]


def choose_cases(path: str, text: str, regions: int, indents: int, brackets: int) -> FileCases | None:
    """The file's cases, or None when it has too few usable lines (or does not tokenize)."""
    kinds = line_kinds(text)
    if kinds is None or "\r" in text:
        return None
    lines = text.split("\n")
    code = [_is_code(line, index, kinds) for index, line in enumerate(lines)]
    region_starts = [
        i for i in range(len(lines) - REGION_LINES)
        if i in kinds.statement_starts and all(code[i : i + REGION_LINES])
        and sum(len(line.strip()) for line in lines[i : i + REGION_LINES]) >= 30
    ]  # fmt: skip
    indent_lines = [
        i for i, line in enumerate(lines)
        if code[i] and i in kinds.statement_starts and line[:1] in (" ", "\t") and len(line.strip()) >= 6
    ]  # fmt: skip
    bracket_lines = []
    for i, line in enumerate(lines):
        parens = first_parens(line) if code[i] else None
        if parens is not None and line[parens[0] + 1 : parens[1]].strip() and bracket_balanced(line):
            bracket_lines.append(i)
    chosen = FileCases(
        path, text, tuple(spread(region_starts, regions, REGION_LINES + 2)),
        tuple(spread(indent_lines, indents, 1)), tuple(spread(bracket_lines, brackets, 1)),
    )  # fmt: skip
    if len(chosen.regions) < min(regions, 1) or len(chosen.indent_lines) < min(indents, 1) or len(chosen.bracket_lines) < min(brackets, 1):
        return None
    return chosen


def select_files(count: int, regions: int, indents: int, brackets: int) -> list[FileCases]:
    from training.corpus import load_heldout_documents

    chosen = []
    for document in load_heldout_documents():
        cases = choose_cases(document.path, document.text, regions, indents, brackets)
        if cases is not None:
            chosen.append(cases)
        if len(chosen) == count:
            break
    return chosen


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def common_prefix_chars(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


# -- figures ---------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    shown: int = 0
    accepted: int = 0
    loops: int = 0  # shown typing suggestions with an in-line repetition loop
    typed_chars: int = 0
    saved_chars: int = 0
    latency_ms: list[float] = field(default_factory=list)
    shown_by_situation: Counter = field(default_factory=Counter)
    accepted_by_situation: Counter = field(default_factory=Counter)
    requests_by_situation: Counter = field(default_factory=Counter)
    rejected_chars: list[int] = field(default_factory=list)
    rejected_multiline: int = 0
    rejected_right_start: int = 0  # rejected, but the first non-blank character was right
    accepted_chars: list[int] = field(default_factory=list)
    distinct_by_situation: Counter = field(default_factory=Counter)
    shown_ids: set[str] = field(default_factory=set)  # distinct suggestions: typing through one keeps its id
    accepted_ids: set[str] = field(default_factory=set)
    indent_cases: int = 0
    indent_nonempty: int = 0
    indent_errors: int = 0  # starts with a space or a tab
    indent_newline_start: int = 0
    indent_exact: int = 0
    indent_loops: int = 0
    bracket_cases: int = 0
    bracket_shown: int = 0
    bracket_errors: int = 0
    bracket_extra_closer: int = 0
    bracket_left_open: int = 0
    bracket_exact: int = 0
    bracket_loops: int = 0
    case_latency_ms: list[float] = field(default_factory=list)
    desynced_files: int = 0  # the server's text differed from ours at the end of a file: must stay 0


def summarize(t: Tally) -> dict[str, Any]:
    def pct(part: int, whole: int) -> float:
        return round(100.0 * part / whole, 2) if whole else 0.0

    total_chars = t.typed_chars + t.saved_chars
    rejected = t.shown - t.accepted
    return {
        "typing": {
            "requests": t.requests, "shown": t.shown, "accepted": t.accepted, "acceptRatePct": pct(t.accepted, t.shown),
            "distinctShown": len(t.shown_ids), "distinctAccepted": len(t.accepted_ids),
            "typedChars": t.typed_chars, "savedChars": t.saved_chars, "savedPctOfRegionChars": pct(t.saved_chars, total_chars),
            "latencyMs": {"p50": round(percentile(t.latency_ms, 0.5), 1), "p95": round(percentile(t.latency_ms, 0.95), 1)},
            "loopsShown": t.loops,
            "bySituation": {
                name: {"requests": t.requests_by_situation[name], "shown": t.shown_by_situation[name],
                       "distinct": t.distinct_by_situation[name], "accepted": t.accepted_by_situation[name]}
                for name in SITUATIONS
            },
            "rejected": {
                "count": rejected, "charsP50": percentile(t.rejected_chars, 0.5), "charsP95": percentile(t.rejected_chars, 0.95),
                "multiline": t.rejected_multiline, "rightFirstChar": t.rejected_right_start,
            },
            "acceptedCharsP50": percentile(t.accepted_chars, 0.5),
        },
        "indent": {
            "cases": t.indent_cases, "nonEmpty": t.indent_nonempty, "errors": t.indent_errors,
            "startsWithNewline": t.indent_newline_start, "exact": t.indent_exact, "loops": t.indent_loops,
        },
        "bracket": {
            "cases": t.bracket_cases, "shown": t.bracket_shown, "errors": t.bracket_errors, "errorPctOfShown": pct(t.bracket_errors, t.bracket_shown),
            "extraCloser": t.bracket_extra_closer, "leftOpen": t.bracket_left_open, "exact": t.bracket_exact, "loops": t.bracket_loops,
        },
        "caseLatencyMs": {"p50": round(percentile(t.case_latency_ms, 0.5), 1), "p95": round(percentile(t.case_latency_ms, 0.95), 1)},
        "desyncedFiles": t.desynced_files,
    }  # fmt: skip


# -- driving one server ------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    name: str
    tree: Path
    settings: dict[str, Any]


def parse_side(spec: str) -> Side:
    """``NAME=TREE[:JSON_SETTINGS]``."""
    name, equals, rest = spec.partition("=")
    if not equals or not name or not rest:
        raise argparse.ArgumentTypeError(f"--side wants NAME=TREE[:JSON_SETTINGS], got {spec!r}")
    tree, colon, raw = rest.partition(":")
    try:
        settings = json.loads(raw) if colon else {}
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--side {name}: the settings are not JSON ({error}): {raw!r}") from None
    if not isinstance(settings, dict):
        raise argparse.ArgumentTypeError(f"--side {name}: the settings must be a JSON object, got {raw!r}")
    path = Path(tree).resolve()
    if not (path / "lsp_server" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"--side {name}: {path} is not a checkout of this project (no lsp_server/__main__.py)")
    return Side(name, path, settings)


def describe_tree(tree: Path) -> str:
    """``<short commit>`` plus ``+dirty`` when the work tree has changes."""
    try:
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (commit or "?") + ("+dirty" if dirty else "")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _position(line: int, character: int) -> dict[str, int]:
    return {"line": line, "character": character}


class SideServer:
    """One side's server process and the documents open in it."""

    def __init__(self, side: Side, common: dict[str, Any], log_level: str = "WARNING"):
        from tests.reliability.rawclient import ServerProcess

        self.side = side
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(side.tree)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self.options = {**DEFAULT_OPTIONS, **common, **side.settings}
        self.server = ServerProcess(log_level=log_level, env=env, cwd=side.tree)
        self.connection = self.server.connection
        self.versions: dict[str, int] = {}
        self.tally = Tally()
        self.connection.initialize(self.options, wait_ready=False, timeout_s=LOAD_TIMEOUT_S)

    def wait_ready(self) -> dict[str, Any]:
        stats = self.connection.wait_for_model(("ready", "failed"), LOAD_TIMEOUT_S)
        if stats["model"]["state"] != "ready":
            raise SystemExit(f"side {self.side.name}: the model did not load: {stats['model']}\n{self.server.stderr[-2000:]}")
        return stats

    def open(self, uri: str, text: str) -> None:
        self.versions[uri] = 1
        self.connection.open(uri, text)

    def close(self, uri: str) -> None:
        self.connection.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        self.versions.pop(uri, None)

    def edit(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        self.versions[uri] += 1
        change = {"range": {"start": _position(*start), "end": _position(*end)}, "text": text}
        self.connection.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": self.versions[uri]}, "contentChanges": [change]})

    def inline(self, uri: str, line: int, character: int) -> tuple[str, list[Any] | None, float]:
        """(suggestion text or "", the accept command's arguments, client-side latency in ms)."""
        params = {"textDocument": {"uri": uri}, "position": _position(line, character), "context": {"triggerKind": 2}}
        started = time.perf_counter()
        answer = self.connection.request("textDocument/inlineCompletion", params, REQUEST_TIMEOUT_S)
        latency_ms = (time.perf_counter() - started) * 1000
        self.connection.discard_messages()
        if "result" not in answer:
            raise SystemExit(f"side {self.side.name}: inline completion failed: {answer}\n{self.server.stderr[-2000:]}")
        result = answer["result"] or {}
        items = result.get("items", []) if isinstance(result, dict) else result
        if not items:
            return "", None, latency_ms
        item = items[0]
        text = item["insertText"] if isinstance(item.get("insertText"), str) else item["insertText"].get("value", "")
        command = item.get("command") or {}
        return text, command.get("arguments"), latency_ms

    def accepted(self, arguments: list[Any] | None) -> None:
        """What an editor runs when the user takes the suggestion (the answer is not waited for)."""
        self.connection.send_request("workspace/executeCommand", {"command": "santacoder.accepted", "arguments": arguments or []})

    def document_sha256(self, uri: str) -> str | None:
        answer = self.connection.request("santacoder/documentState", {"uri": uri}, REQUEST_TIMEOUT_S)
        self.connection.discard_messages()
        return (answer.get("result") or {}).get("sha256")

    def stats(self) -> dict[str, Any]:
        stats = self.connection.stats()
        self.connection.discard_messages()
        return stats

    def stop(self) -> None:
        try:
            self.connection.request("shutdown", None, 20)
            self.connection.notify("exit")
            self.server.wait(20)
        except (AssertionError, OSError):
            pass
        self.server.stop()


# -- the replay ------------------------------------------------------------------------------


def replay_file(server: SideServer, cases: FileCases, details: TextIO | None, auto_indent: bool = True) -> None:
    uri = "file:///heldout/" + cases.path
    lines = cases.text.split("\n")
    server.open(uri, cases.text)
    for first in cases.regions:
        _type_region(server, uri, lines, first, cases.path, details, auto_indent)
    for index in cases.indent_lines:
        _indent_case(server, uri, lines[index], index, cases.path, details)
    for index in cases.bracket_lines:
        _bracket_case(server, uri, lines[index], index, cases.path, details)
    if server.document_sha256(uri) != hashlib.sha256(cases.text.encode("utf-8")).hexdigest():
        server.tally.desynced_files += 1
    server.close(uri)


def _indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def next_keystroke(ahead: str, line_before: str, auto_indent: bool) -> str:
    """What the user types next. ``auto_indent``: as an editor's auto-indent or a Tab would,
    Enter brings the next line's indentation with it, and indentation at a line start comes in
    one edit."""
    if auto_indent and ahead[0] == "\n":
        return "\n" + _indentation(ahead[1:])
    if auto_indent and ahead[0] in " \t" and not line_before.strip():
        return _indentation(ahead)
    return ahead[0]


def _type_region(
    server: SideServer, uri: str, lines: list[str], first: int, path: str, details: TextIO | None, auto_indent: bool
) -> None:
    """Blank lines ``first`` .. ``first + 2`` (the cursor line keeps its indentation when
    ``auto_indent``) and type them back."""
    t = server.tally
    last = first + REGION_LINES - 1
    kept = _indentation(lines[first]) if auto_indent else ""
    region = "\n".join(lines[first : last + 1])[len(kept) :]
    server.edit(uri, (first, _utf16_len(kept)), (last, _utf16_len(lines[last])), "")
    line, done = first, 0
    line_before = kept
    while done < len(region):
        text, arguments, latency_ms = server.inline(uri, line, _utf16_len(line_before))
        t.requests += 1
        t.latency_ms.append(latency_ms)
        situation = cursor_situation(line_before)
        t.requests_by_situation[situation] += 1
        ahead = region[done:]
        if text.strip():
            t.shown += 1
            t.shown_by_situation[situation] += 1
            suggestion_id = str(arguments[0] if arguments else "")
            if suggestion_id not in t.shown_ids:
                t.distinct_by_situation[situation] += 1  # where it was first offered
            t.shown_ids.add(suggestion_id)
            loop = has_repetition_loop(text)
            t.loops += loop
            taken = ahead.startswith(text)
            if taken:
                t.accepted += 1
                t.accepted_by_situation[situation] += 1
                t.accepted_ids.add(str(arguments[0] if arguments else ""))
                t.accepted_chars.append(len(text))
            else:
                t.rejected_chars.append(len(text))
                t.rejected_multiline += "\n" in text.rstrip("\n")
                t.rejected_right_start += text.lstrip()[:1] == ahead.lstrip()[:1]
            if details is not None:
                row = {"side": server.side.name, "kind": "typing", "file": path, "line": line, "situation": situation, "before": line_before,
                       "suggestion": text, "ahead": ahead[:200], "accepted": taken, "loop": loop, "latencyMs": round(latency_ms, 1),
                       "id": arguments[0] if arguments else None}  # fmt: skip
                details.write(json.dumps(row) + "\n")
        else:
            taken = False
        insert = text if taken else next_keystroke(ahead, line_before, auto_indent)
        server.edit(uri, (line, _utf16_len(line_before)), (line, _utf16_len(line_before)), insert)
        if taken:
            t.saved_chars += len(insert)
            server.accepted(arguments)
        else:
            t.typed_chars += len(insert)
        done += len(insert)
        if "\n" in insert:
            line += insert.count("\n")
            line_before = insert.rsplit("\n", 1)[1]
        else:
            line_before += insert


def _one_line_case(server: SideServer, uri: str, index: int, line: str, head: str, rest: str) -> tuple[str, float]:
    """Replace line ``index`` by ``head + rest``, ask at the end of ``head``, put it back."""
    server.edit(uri, (index, 0), (index, _utf16_len(line)), head + rest)
    text, _, latency_ms = server.inline(uri, index, _utf16_len(head))
    server.edit(uri, (index, 0), (index, _utf16_len(head + rest)), line)
    server.tally.case_latency_ms.append(latency_ms)
    return text, latency_ms


def _indent_case(server: SideServer, uri: str, line: str, index: int, path: str, details: TextIO | None) -> None:
    t = server.tally
    indentation = line[: len(line) - len(line.lstrip(" \t"))]
    text, latency_ms = _one_line_case(server, uri, index, line, indentation, "")
    t.indent_cases += 1
    error = text[:1] in (" ", "\t")
    if details is not None:
        row = {"side": server.side.name, "kind": "indent", "file": path, "line": index, "original": line, "suggestion": text,
               "error": error, "latencyMs": round(latency_ms, 1)}  # fmt: skip
        details.write(json.dumps(row) + "\n")
    if not text:
        return
    t.indent_nonempty += 1
    t.indent_errors += error
    t.indent_newline_start += text[0] in "\r\n"
    t.indent_exact += text.split("\n", 1)[0].rstrip() == line.strip()
    t.indent_loops += has_repetition_loop(text)


def _bracket_case(server: SideServer, uri: str, line: str, index: int, path: str, details: TextIO | None) -> None:
    t = server.tally
    parens = first_parens(line)
    assert parens is not None  # chosen so
    head, inside, rest = line[: parens[0] + 1], line[parens[0] + 1 : parens[1]], line[parens[1] :]
    text, latency_ms = _one_line_case(server, uri, index, line, head, rest)
    t.bracket_cases += 1
    kind = bracket_error_kind(head + text + rest) if text.strip() else "not shown"
    if details is not None:
        row = {"side": server.side.name, "kind": "bracket", "file": path, "line": index, "original": line, "head": head, "rest": rest,
               "suggestion": text, "outcome": kind, "latencyMs": round(latency_ms, 1)}  # fmt: skip
        details.write(json.dumps(row) + "\n")
    if not text.strip():
        return
    t.bracket_shown += 1
    t.bracket_errors += kind != "balanced"
    t.bracket_extra_closer += kind == "extra closer"
    t.bracket_left_open += kind == "left open"
    t.bracket_exact += text == inside
    t.bracket_loops += has_repetition_loop(text)


# -- report ----------------------------------------------------------------------------------


def format_table(names: Sequence[str], figures: dict[str, dict[str, Any]]) -> str:
    def row(label: str, get) -> str:
        return f"{label:44}" + "".join(f"{str(get(figures[name])):>16}" for name in names)

    def ratio(part: int, whole: int) -> str:
        return f"{part} ({100.0 * part / whole:.1f}%)" if whole else f"{part} (-)"

    ty, ind, br = (lambda f: f["typing"]), (lambda f: f["indent"]), (lambda f: f["bracket"])
    out = [f"{'':44}" + "".join(f"{name:>16}" for name in names)]
    out += [
        "typing replay",
        row("  requests", lambda f: ty(f)["requests"]),
        row("  shown (non-blank)", lambda f: ty(f)["shown"]),
        row("  accepted (accept rate of shown)", lambda f: ratio(ty(f)["accepted"], ty(f)["shown"])),
        row("  distinct suggestions shown / accepted", lambda f: f"{ty(f)['distinctShown']} / {ty(f)['distinctAccepted']}"),
        row("  chars saved (of region chars)", lambda f: ratio(ty(f)["savedChars"], ty(f)["savedChars"] + ty(f)["typedChars"])),
        row("  chars typed", lambda f: ty(f)["typedChars"]),
        row("  latency p50 / p95 ms (client)", lambda f: f"{ty(f)['latencyMs']['p50']} / {ty(f)['latencyMs']['p95']}"),
        row("  shown with a repetition loop", lambda f: ty(f)["loopsShown"]),
        "indent cases",
        row("  cases", lambda f: ind(f)["cases"]),
        row("  non-empty", lambda f: ind(f)["nonEmpty"]),
        row("  errors: starts with space/tab (of n-e)", lambda f: ratio(ind(f)["errors"], ind(f)["nonEmpty"])),
        row("  starts with a newline", lambda f: ind(f)["startsWithNewline"]),
        row("  first line exactly the line's text", lambda f: ind(f)["exact"]),
        row("  with a repetition loop", lambda f: ind(f)["loops"]),
        "bracket cases",
        row("  cases", lambda f: br(f)["cases"]),
        row("  shown (non-blank)", lambda f: br(f)["shown"]),
        row("  errors: unbalanced (of shown)", lambda f: ratio(br(f)["errors"], br(f)["shown"])),
        row("    a closer too many / left open", lambda f: f"{br(f)['extraCloser']} / {br(f)['leftOpen']}"),
        row("  exactly the removed text", lambda f: br(f)["exact"]),
        row("  with a repetition loop", lambda f: br(f)["loops"]),
        row("case latency p50 / p95 ms", lambda f: f"{f['caseLatencyMs']['p50']} / {f['caseLatencyMs']['p95']}"),
        row("files whose text went out of sync (must be 0)", lambda f: f["desyncedFiles"]),
    ]
    out += ["", "typing replay by cursor situation: requests / shown / distinct (where first shown) / accepted"]
    for situation in SITUATIONS:
        out.append(row(f"  {situation}", lambda f, s=situation: "{requests}/{shown}/{distinct}/{accepted}".format(**ty(f)["bySituation"][s])))
    out += [
        "shown but rejected",
        row("  count", lambda f: ty(f)["rejected"]["count"]),
        row("  length p50 / p95 chars", lambda f: f"{ty(f)['rejected']['charsP50']} / {ty(f)['rejected']['charsP95']}"),
        row("  spanning lines", lambda f: ty(f)["rejected"]["multiline"]),
        row("  first non-blank char right", lambda f: ty(f)["rejected"]["rightFirstChar"]),
        row("accepted length p50 chars", lambda f: ty(f)["acceptedCharsP50"]),
    ]
    return "\n".join(out)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", action="append", type=parse_side, default=[], metavar="NAME=TREE[:JSON]", help="repeat; default: before=/work/base after=this tree")
    parser.add_argument("--settings", type=json.loads, default={}, help="JSON settings for every side (a side's own JSON wins)")
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--regions", type=int, default=1, help="typed regions of 3 lines per file")
    parser.add_argument("--indent-cases", type=int, default=4, help="per file")
    parser.add_argument("--bracket-cases", type=int, default=4, help="per file")
    parser.add_argument("--no-auto-indent", dest="auto_indent", action="store_false",
                        help="type indentation one space at a time too (default: Enter brings the next line's indentation)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 files, 1 region, 2 cases of each kind")
    parser.add_argument("--json", type=Path, help="write all figures here")
    parser.add_argument("--details", type=Path, help="write one JSON line per shown suggestion and per case here")
    parser.add_argument("--log-level", default="WARNING", help="the servers' log level (their stderr is kept, shown on failure)")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.regions, args.indent_cases, args.bracket_cases = 3, 1, 2, 2
    sides = args.side or [parse_side(f"before={BASE_TREE}"), parse_side(f"after={REPO}")]
    if len({side.name for side in sides}) != len(sides):
        parser.error("side names must differ")
    files = select_files(args.files, args.regions, args.indent_cases, args.bracket_cases)
    if not files:
        parser.error("no held-out file has usable lines")
    trees = {side.name: describe_tree(side.tree) for side in sides}
    header = (
        f"acceptance replay: {len(files)} held-out files, {sum(len(f.regions) for f in files)} regions of {REGION_LINES} lines,"
        f" {sum(len(f.indent_lines) for f in files)} indent and {sum(len(f.bracket_lines) for f in files)} bracket cases; CPU {cpu_name()}\n"
        + "\n".join(f"  {s.name}: {s.tree} ({trees[s.name]}) settings {json.dumps({**DEFAULT_OPTIONS, **args.settings, **s.settings})}" for s in sides)
    )  # fmt: skip
    print(header, flush=True)
    details = args.details.open("w", encoding="utf-8") if args.details else None
    servers = [SideServer(side, args.settings, args.log_level) for side in sides]
    started = time.perf_counter()
    try:
        load_stats = {server.side.name: server.wait_ready()["model"] for server in servers}
        print(f"models ready in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        started = time.perf_counter()
        for number, cases in enumerate(files):
            for server in servers if number % 2 == 0 else servers[::-1]:
                replay_file(server, cases, details, args.auto_indent)
            print(f"  [{number + 1}/{len(files)}] {cases.path}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        server_stats = {server.side.name: server.stats() for server in servers}
    finally:
        for server in servers:
            server.stop()
        if details is not None:
            details.close()
    names = [side.name for side in sides]
    figures = {server.side.name: summarize(server.tally) for server in servers}
    print(f"replayed in {time.perf_counter() - started:.0f} s")
    print(format_table(names, figures))
    if args.json:
        out = {
            "command": [sys.executable, *sys.argv], "cpu": cpu_name(), "files": [f.path for f in files],
            "sides": [{"name": s.name, "tree": str(s.tree), "commit": trees[s.name], "settings": {**DEFAULT_OPTIONS, **args.settings, **s.settings}} for s in sides],
            "figures": figures, "model": load_stats, "serverStats": server_stats,
        }  # fmt: skip
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(f["desyncedFiles"] == 0 for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
