"""What the model sees around the cursor: token-budgeted prefix/suffix windows, and the
cursor's shape (single- or multi-line mode, block indentation, rest of line, next line).

Why the windows move in coarse, line-aligned jumps: GPTBigCode has learned absolute
positions, so cached KV cannot be shifted and a prompt's KV is reusable only while the
prompt's head stays put. The window edges therefore must not move with each keystroke:

- prefix start: only *anchor* lines, the first line start at or after each multiple of
  ``step_chars`` counted from the document start, may start the window. Typing at the cursor changes nothing before the cursor, so the start
  stays until the window overflows, then jumps forward by about one step (an eighth of the
  budget), which buys another step of typing before the next jump.
- suffix end: the farthest line end that fits. It depends only on the text after the cursor,
  which typing at the cursor does not change, so the suffix (which leads the prompt in SPM
  order) stays byte-identical without coarse anchors; an edit below the cursor changes the
  suffix and costs a full prefill whatever the window does.

Token counts are estimated per line (cached by line text, so a keystroke re-tokenizes only the
cursor line), then the chosen window is counted exactly once and stepped inward if the
estimate was short. Windows are plain text; the runtime adds the FIM tokens, so they are
never cut. Line breaks are normalized to ``\\n`` for the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

from cachetools import LRUCache

Mode = Literal["single", "multi"]

CHARS_PER_TOKEN_ESTIMATE = 3
WINDOW_STEP_FRACTION = 8  # a window edge jumps by about 1/8 of the prompt budget
MAX_CHARS_PER_TOKEN = 16  # text farther than budget x this from the cursor is never in a window
CURSOR_LOOKAHEAD_CHARS = 4096  # describe_cursor looks this far past the cursor line for the next line
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BLOCK_OPENERS = (":", "{", "(", "[", "=>", " do", " then")
_CLOSERS = (")", "]", "}", "end")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


class TokenCounter:
    """Counts tokens with the engine's tokenizer; caches per-line counts by line text."""

    def __init__(self, count_tokens: Callable[[str], int], cache_lines: int = 16384):
        self.count = count_tokens
        self._lines: LRUCache[str, int] = LRUCache(maxsize=cache_lines)

    def line(self, text: str) -> int:
        count = self._lines.get(text)
        if count is None:
            count = self._lines[text] = self.count(text)
        return count


@dataclass(frozen=True)
class Budget:
    prefix_tokens: int
    suffix_tokens: int
    step_chars: int


def plan_budget(prompt_tokens: int, prefix_ratio: float, extra_context_tokens: int = 0) -> Budget:
    """Split the runtime's prompt budget (``ModelInfo.prompt_budget(...).prompt_tokens``: the
    context minus new tokens and FIM sentinels, decided by the runtime alone) by ``prefix_ratio``,
    after the extra-context block's share."""
    total = max(2, prompt_tokens - extra_context_tokens)
    prefix = max(1, int(total * prefix_ratio))
    step = max(16, total * CHARS_PER_TOKEN_ESTIMATE // WINDOW_STEP_FRACTION)
    return Budget(prefix_tokens=prefix, suffix_tokens=max(1, total - prefix), step_chars=step)


@dataclass(frozen=True)
class Windows:
    prefix: str  # model input before the cursor, "\n" line breaks
    suffix: str
    prefix_start: int  # document offsets of the window edges
    suffix_end: int
    prefix_tokens: int
    suffix_tokens: int


def _line_starts_before(text: str, offset: int, lowest: int) -> list[int]:
    """Line starts in [lowest, offset], ascending."""
    starts = [m.end() for m in _LINE_BREAK.finditer(text, lowest, offset)]
    if _is_line_start(text, lowest):
        starts.insert(0, lowest)
    return [s for s in starts if s <= offset]


def _is_line_start(text: str, index: int) -> bool:
    return index == 0 or text[index - 1] == "\n" or (text[index - 1] == "\r" and text[index : index + 1] != "\n")


def _previous_line_start(text: str, start: int) -> int:
    """Start of the line before the one starting at ``start`` (0 for the first line)."""
    j = start - 1
    if j > 0 and text[j] == "\n" and text[j - 1] == "\r":
        j -= 1
    return max(text.rfind("\n", 0, j), text.rfind("\r", 0, j)) + 1


def _fit_by_bytes_backward(text: str, start_limit: int, offset: int, budget: int) -> int:
    """Earliest start >= ``start_limit`` whose text up to ``offset`` has at most ``budget``
    UTF-8 bytes, hence at most ``budget`` tokens (a byte-level token covers at least one byte)."""
    used, start = 0, offset
    while start > start_limit:
        size = len(text[start - 1].encode("utf-8"))
        if used + size > budget:
            break
        used, start = used + size, start - 1
    return start


def _fit_by_bytes_forward(text: str, offset: int, end_limit: int, budget: int) -> int:
    used, end = 0, offset
    while end < end_limit:
        size = len(text[end].encode("utf-8"))
        if used + size > budget:
            break
        used, end = used + size, end + 1
    return end


def prefix_window_start(text: str, offset: int, budget_tokens: int, step_chars: int, counter: TokenCounter, base: int = 0) -> int:
    """Index into ``text`` where the prefix window starts (see the module docstring).
    ``text`` may be an excerpt whose first character is at document offset ``base``
    (``Document.excerpt``, reaching at least ``window_reach_chars`` around the cursor)."""
    if base == 0 and offset <= budget_tokens and len(text[:offset].encode("utf-8")) <= budget_tokens:
        return 0  # every token is at least one byte: it fits whole
    lowest = max(0, base + offset - budget_tokens * MAX_CHARS_PER_TOKEN) - base  # farther text cannot fit in practice
    lowest = max(0, lowest)
    starts = _line_starts_before(text, offset, lowest)
    if not starts:
        return _fit_by_bytes_backward(text, lowest, offset, budget_tokens)
    cursor_line = starts[-1]
    estimate = counter.count(normalize_newlines(text[cursor_line:offset]))
    chosen: list[int] = []  # anchors that fit by estimate, nearest the cursor first
    for i in range(len(starts) - 1, -1, -1):
        start = starts[i]
        if i < len(starts) - 1:
            estimate += counter.line(normalize_newlines(text[start : starts[i + 1]]))
        if estimate > budget_tokens:
            break
        previous = starts[i - 1] if i > 0 else _previous_line_start(text, start)
        is_anchor = base + start == 0 or (base + start) // step_chars > (base + previous) // step_chars
        if is_anchor or start == cursor_line:
            chosen.append(start)
    for start in reversed(chosen):  # farthest first; the first that truly fits wins
        if counter.count(normalize_newlines(text[start:offset])) <= budget_tokens:
            return start
    return _fit_by_bytes_backward(text, cursor_line, offset, budget_tokens)


def suffix_window_end(text: str, offset: int, budget_tokens: int, counter: TokenCounter) -> int:
    """Document offset where the suffix window ends: the farthest line end that fits. This is
    a function of the text after the cursor alone, which typing at the cursor does not change,
    so the suffix stays identical while the user types without needing coarse anchors."""
    size = len(text)
    if size - offset <= budget_tokens and len(text[offset:].encode("utf-8")) <= budget_tokens:
        return size
    highest = min(size, offset + budget_tokens * MAX_CHARS_PER_TOKEN)
    ends = [m.end() for m in _LINE_BREAK.finditer(text, offset, highest)]  # after each line break
    if not ends:
        return _fit_by_bytes_forward(text, offset, highest, budget_tokens)
    estimate, chosen = 0, []
    for i, end in enumerate(ends):
        estimate += counter.line(normalize_newlines(text[ends[i - 1] if i else offset : end]))
        if estimate > budget_tokens:
            break
        chosen.append(end)
    for end in reversed(chosen):
        if counter.count(normalize_newlines(text[offset:end])) <= budget_tokens:
            return end
    return _fit_by_bytes_forward(text, offset, ends[0], budget_tokens)  # a giant cursor line


def extract_windows(text: str, offset: int, budget: Budget, counter: TokenCounter, base: int = 0) -> Windows:
    """Suffix first: a suffix shorter than its budget gives the rest to the prefix. The suffix
    does not change while the user types at the cursor, so neither does that transfer.

    ``text`` is the document, or an excerpt of it starting at document offset ``base`` and
    reaching ``window_reach_chars`` on both sides of the cursor (or to the document's ends):
    the windows are then the same as the whole document's, at the cost of the excerpt.
    ``offset`` indexes ``text``; the offsets in the result are the document's."""
    suffix_end = suffix_window_end(text, offset, budget.suffix_tokens, counter)
    suffix = normalize_newlines(text[offset:suffix_end])
    suffix_tokens = counter.count(suffix) if suffix else 0
    prefix_budget = budget.prefix_tokens + max(0, budget.suffix_tokens - suffix_tokens)
    prefix_start = prefix_window_start(text, offset, prefix_budget, budget.step_chars, counter, base)
    prefix = normalize_newlines(text[prefix_start:offset])
    return Windows(prefix, suffix, base + prefix_start, base + suffix_end, counter.count(prefix) if prefix else 0, suffix_tokens)


def window_reach_chars(context_tokens: int) -> int:
    """How far from the cursor the windows (and ``describe_cursor``) may look, in characters:
    an excerpt reaching this far on each side gives the same windows as the whole document."""
    return context_tokens * MAX_CHARS_PER_TOKEN + CURSOR_LOOKAHEAD_CHARS + 1


# -- the cursor's shape -----------------------------------------------------------------------


def indent_width(line: str) -> int:
    stripped = line.lstrip(" \t")
    return len(line[: len(line) - len(stripped)].expandtabs(4))


@dataclass(frozen=True)
class CursorShape:
    """What the stop rules need to know about the cursor. Widths are in columns (tab = 4)."""

    mode: Mode
    line_before: str  # the cursor line up to the cursor
    line_after: str  # the rest of the cursor line, without its line break
    next_line: str  # the first non-blank line after the cursor line ("" at the end)
    block_indent: int  # multi-line: a generated line indented less than this leaves the block
    closer_indent: int | None  # after an opener: a closing line at this indent ends the block
    eol: str  # the document's line break, for the inserted text


def is_closer_line(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and stripped.startswith(_CLOSERS)


def describe_cursor(text: str, offset: int, eol: str = "\n") -> CursorShape:
    """Mid-line (text after the cursor) -> single line. Empty line or after a block opener ->
    multi-line, limited to the cursor's block. Anything else -> single line."""
    line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    match = _LINE_BREAK.search(text, offset)
    line_end = match.start() if match else len(text)
    line_before, line_after = text[line_start:offset], text[offset:line_end]
    next_line = ""
    if match:
        for line in _LINE_BREAK.split(text[match.end() : match.end() + 4096]):
            if line.strip():
                next_line = line
                break
    mode: Mode = "single"
    block_indent, closer_indent = 0, None
    if not line_after.strip():
        if not line_before.strip():
            mode, block_indent = "multi", indent_width(line_before)
        elif line_before.rstrip().endswith(_BLOCK_OPENERS):
            mode = "multi"
            closer_indent = indent_width(line_before)
            block_indent = closer_indent + 1
    return CursorShape(mode, line_before, line_after, next_line, block_indent, closer_indent, eol)
