"""Stop rules: when to stop decoding and how to trim what was decoded.

``StopRules.check`` is the runtime's stop callback: it is called with the whole text after
every decoded token and returns ``None`` to go on or an index to cut at (the runtime then
stops), so no token is generated only to be thrown away. ``StopRules.finish`` post-processes
the final text with the same rules plus the trims that need the whole text.

Rules, in the order they apply:
- single-line mode: stop at the first line break;
- multi-line mode: stop before a line indented less than the cursor's block (after a block
  opener, a closing line such as ``}`` at the opener's indent is kept and ends the block);
- stop before a generated line that equals the next non-blank line of the suffix;
- stop at a repeated-line loop, keeping its first occurrence;
- drop the tail that duplicates the rest of the cursor line (closing brackets already there);
- drop results that are empty or only whitespace.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import CursorShape, indent_width, is_closer_line

MAX_LOOP_PERIOD_LINES = 8
_OPENERS, _CLOSERS = "([{", ")]}"


def bracket_balance(text: str) -> int:
    """Openers minus closers, all bracket kinds together (strings are not parsed)."""
    return sum(text.count(c) for c in _OPENERS) - sum(text.count(c) for c in _CLOSERS)


def repeated_lines_cut(lines: list[str]) -> int | None:
    """If the last lines repeat a block of 1..8 lines (a single line 3 times, a longer block
    twice), the number of lines to keep: everything up to the end of the first repeat."""
    count = len(lines)
    for period in range(1, MAX_LOOP_PERIOD_LINES + 1):
        repeats = 3 if period == 1 else 2
        if count < period * repeats:
            break
        block = lines[count - period :]
        if not any(any(ch.isalnum() for ch in line) for line in block):
            continue  # blank or punctuation-only lines repeat in real code
        if all(lines[count - period * (r + 1) : count - period * r] == block for r in range(1, repeats)):
            return count - period * (repeats - 1)
    return None


def overlap_with_rest_of_line(first_line: str, rest_of_line: str) -> int:
    """How many trailing characters of ``first_line`` duplicate the start of the rest of the
    cursor line. The whole rest counts when it has no closing bracket or when the line closes
    more brackets than it opens; a partial overlap counts only if it is closing brackets."""
    tail = rest_of_line.strip()
    if not tail:
        return 0
    closes_extra = bracket_balance(first_line) < 0
    core = first_line.rstrip()
    if core.endswith(tail) and (closes_extra or not any(c in _CLOSERS for c in tail)):
        return len(first_line) - (len(core) - len(tail))
    if not closes_extra:
        return 0
    for size in range(min(len(tail), len(core)) - 1, 0, -1):
        piece = tail[:size]
        if core.endswith(piece) and all(c in _CLOSERS for c in piece):
            return len(first_line) - (len(core) - size)
    return 0


@dataclass(frozen=True)
class StopRules:
    shape: CursorShape

    def check(self, text: str) -> int | None:
        """Stop callback: ``None`` to go on, or the index to cut the text at."""
        return self._cut(text, final=False)

    def finish(self, text: str) -> str:
        """The text to show: all rules applied as if decoding had ended here; may be ``""``."""
        cut = self._cut(text, final=True)
        if cut is not None:
            text = text[:cut]
        if self.shape.mode == "single":
            text = text.split("\n", 1)[0]
            overlap = overlap_with_rest_of_line(text, self.shape.line_after)
            text = text[: len(text) - overlap] if overlap else text
        else:
            text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
        return text if text.strip() else ""

    def _cut(self, text: str, *, final: bool) -> int | None:
        shape = self.shape
        if shape.mode == "single":
            newline = text.find("\n")
            if newline >= 0:
                return newline
            tail = shape.line_after.strip()
            if tail and text.rstrip().endswith(tail):
                overlap = overlap_with_rest_of_line(text, shape.line_after)
                if overlap:
                    return len(text) - overlap
            return None
        lines = text.split("\n")
        complete = len(lines) if final else len(lines) - 1  # the last line may still grow
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        next_line = shape.next_line.strip()
        whole_lines = [shape.line_before + lines[0], *lines[1:]]  # line 0 continues the cursor line
        for i, line in enumerate(lines):
            is_complete = i < complete
            whole = whole_lines[i]
            if i > 0 and line.strip() and indent_width(line) < shape.block_indent:
                closes_block = shape.closer_indent is not None and indent_width(line) == shape.closer_indent and is_closer_line(line)
                if not closes_block:
                    return starts[i] - 1  # before this line and its line break
                if is_complete and not (next_line and line.strip() == next_line):
                    return starts[i] + len(line)  # keep the closing line, then stop
            if is_complete and next_line and whole.strip() == next_line and (i > 0 or not shape.line_before.strip()):
                return max(0, starts[i] - 1)
            if is_complete and i > 0:
                keep = repeated_lines_cut(whole_lines[: i + 1])
                if keep is not None:
                    return starts[keep] - 1
        return None
