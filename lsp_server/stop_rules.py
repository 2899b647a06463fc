"""Stop rules: when to stop decoding and how to trim what was decoded.

``StopRules.check`` is the runtime's stop callback: it is called with the whole text after
every decoded token and returns ``None`` to go on or an index to cut at (the runtime then
stops), so no token is generated only to be thrown away. ``StopRules.finish`` post-processes
the final text with the same rules plus the trims that need the whole text.

Rules, in the order they apply:
- single-line mode: stop at the first line break;
- single-line mode with text after the cursor: the suggestion must fit between the two. Stop
  where the generated text, at the cursor's bracket depth and string state, reaches what the
  rest of the line begins with (its first word or punctuation), or closes a bracket that the
  rest of the line closes already; the completed line never has more unmatched closers than
  it had without the suggestion. Strings and comments are not brackets;
- multi-line mode: stop before a line indented less than the cursor's block (after a block
  opener, a closing line such as ``}`` at the opener's indent is kept and ends the block); in
  brace languages the block ends at the brace that closes the cursor's block instead: that
  line is kept, unless the suffix's next line is already that closer;
- stop before a generated line that equals the next non-blank line of the suffix;
- stop at a repeated-line loop, keeping its first occurrence;
- stop at a loop inside a line (the same run of characters three times in a row, or twice
  for a run of 16 or more), keeping its first occurrence;
- drop the tail that duplicates the rest of the cursor line (closing brackets already there);
- a single-line suggestion that decoding cut short (unlikely next token, token cap, deadline)
  with text after the cursor ends where everything it opened is closed again: a partial
  ``g(x, `` before the rest of the line would leave it unbalanced, ``g`` does not;
- drop results that are empty or only whitespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .context import CursorShape, indent_width, is_closer_line
from .languages import CLOSERS, Language, LineState, language_of, scan, step, unmatched_closers

MAX_LOOP_PERIOD_LINES = 8
MAX_LOOP_PERIOD_CHARS = 48
LONG_LOOP_PERIOD_CHARS = 16  # a run at least this long loops after two repeats, shorter ones after three
_OPENERS, _CLOSERS = "([{", ")]}"
_WORD = re.compile(r"\w+")


def repeated_run_cut(line: str) -> int | None:
    """If ``line`` ends with a run of characters repeated back to back (three times, or twice
    for a run of ``LONG_LOOP_PERIOD_CHARS`` or more) that holds a letter or digit, the length
    to keep: up to the end of the run's first occurrence."""
    size = len(line)
    for period in range(2, MAX_LOOP_PERIOD_CHARS + 1):
        repeats = 2 if period >= LONG_LOOP_PERIOD_CHARS else 3
        if size < period * repeats:
            break
        unit = line[size - period :]
        if not any(ch.isalnum() for ch in unit) or not unit.strip():
            continue
        if all(line[size - period * (r + 1) : size - period * r] == unit for r in range(1, repeats)):
            return size - period * (repeats - 1)
    return None


def _rest_piece(rest: str) -> str:
    """What the rest of the cursor line begins with: its first word, or its first character."""
    tail = rest.lstrip()
    match = _WORD.match(tail)
    return match.group(0) if match else tail[:1]


@dataclass(frozen=True)
class _Fit:
    """The cursor line around the cursor, as the suffix-fit rule reads it."""

    start: LineState  # lexer state at the cursor
    piece: str  # what the rest of the line begins with
    spare_closers: int  # brackets open before the cursor that the rest of the line leaves open
    closers_without: int  # unmatched closers of the line without any suggestion
    before: str  # the character before the cursor ("" at the line start)

    @classmethod
    def of(cls, shape: CursorShape, language: Language) -> "_Fit | None":
        if shape.mode != "single" or not shape.line_after.strip():
            return None
        start = scan(shape.line_before, language)
        after = scan(shape.line_after, language, start)  # what the rest leaves open
        spare = min(len(start.stack), len(after.stack)) if not start.quote else 0
        closers = unmatched_closers(shape.line_before + shape.line_after, language)
        return cls(start, _rest_piece(shape.line_after), spare, closers, shape.line_before[-1:])

    def cut(self, text: str, language: Language) -> int | None:
        """Where ``text`` must end to fit before the rest of the line; ``None`` if it fits so far."""
        state, index, spare, depth = self.start.copy(), 0, self.spare_closers, 0
        while index < len(text):
            at_cursor_level = depth == 0 and state.quote == self.start.quote and not state.comment
            if at_cursor_level and self.piece and text.startswith(self.piece, index) and index + len(self.piece) <= len(text):
                boundary = not self.piece[-1].isalnum() or not text[index + len(self.piece) : index + len(self.piece) + 1].isalnum()
                previous = text[index - 1] if index else self.before
                word_start = not self.piece[0].isalnum() or not previous.isalnum()
                if boundary and word_start:
                    return index
            char = text[index]
            if not state.quote and not state.comment:
                if char in _OPENERS:
                    depth += 1
                elif char in CLOSERS:
                    if depth > 0:
                        depth -= 1
                    elif spare > 0:
                        spare -= 1  # closes a bracket from before the cursor that nothing else closes
                    else:
                        return index  # the rest of the line closes it already
            index = step(state, text, index, language)
        return None

    def settled_end(self, text: str, language: Language) -> int:
        """The length of the longest prefix of ``text`` that closes every bracket and string it
        opens and ends outside a comment: a cut there leaves the rest of the line as it was."""
        state, index, depth, best = self.start.copy(), 0, 0, 0
        while index < len(text):
            char = text[index]
            if not state.quote and not state.comment:
                if char in _OPENERS:
                    depth += 1
                elif char in CLOSERS and depth > 0:
                    depth -= 1
            index = step(state, text, index, language)
            if depth == 0 and state.quote == self.start.quote and not state.comment:
                best = index
        return best

    def over_closes(self, shape: CursorShape, text: str, language: Language) -> bool:
        return unmatched_closers(shape.line_before + text + shape.line_after, language) > self.closers_without


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
    language_id: str = ""
    language: Language = field(init=False)
    _fit: _Fit | None = field(init=False)

    def __post_init__(self) -> None:
        language = language_of(self.language_id)
        object.__setattr__(self, "language", language)
        object.__setattr__(self, "_fit", _Fit.of(self.shape, language))

    def check(self, text: str) -> int | None:
        """Stop callback: ``None`` to go on, or the index to cut the text at."""
        return self._cut(text, final=False)

    def finish(self, text: str, truncated: bool = False) -> str:
        """The text to show: all rules applied as if decoding had ended here; may be ``""``.

        ``truncated``: decoding stopped before the text ended by itself (an unlikely next
        token, the token cap, a deadline), so it may stop inside something it opened."""
        cut = self._cut(text, final=True)
        if cut is not None:
            text = text[:cut]
        if self.shape.mode == "single":
            text = text.split("\n", 1)[0]
            overlap = overlap_with_rest_of_line(text, self.shape.line_after)
            text = text[: len(text) - overlap] if overlap else text
            if self._fit is not None:
                if truncated:
                    text = text[: self._fit.settled_end(text, self.language)]
                if self.shape.line_after[:1].isspace():
                    text = text.rstrip()  # the rest of the line brings its own space
                if self._fit.over_closes(self.shape, text, self.language):
                    return ""  # would break the line's brackets: nothing rather than damage
        else:
            text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
        return text if text.strip() else ""

    def _cut(self, text: str, *, final: bool) -> int | None:
        shape = self.shape
        line_start = text.rfind("\n") + 1
        loop = repeated_run_cut(text[line_start:])
        if shape.mode == "single":
            newline = text.find("\n")
            if newline >= 0:
                text = text[:newline]
            cuts = [newline] if newline >= 0 else []
            if loop is not None and newline < 0:
                cuts.append(line_start + loop)
            if self._fit is not None:
                fit = self._fit.cut(text, self.language)
                if fit is not None:
                    cuts.append(fit)
            tail = shape.line_after.strip()
            if tail and text.rstrip().endswith(tail):
                overlap = overlap_with_rest_of_line(text, shape.line_after)
                if overlap:
                    cuts.append(len(text) - overlap)
            return min(cuts) if cuts else None
        lines = text.split("\n")
        complete = len(lines) if final else len(lines) - 1  # the last line may still grow
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        next_line = shape.next_line.strip()
        whole_lines = [shape.line_before + lines[0], *lines[1:]]  # line 0 continues the cursor line
        braces = self.language.braces
        depth = 0  # brace depth relative to the cursor (brace languages)
        for i, line in enumerate(lines):
            is_complete = i < complete
            whole = whole_lines[i]
            if braces:
                closing_at = _closing_brace(line, depth, self.language)
                if closing_at is not None:
                    if next_line.startswith("}") and not line[:closing_at].strip():
                        return max(0, starts[i] - 1)  # the suffix closes the block already
                    if is_complete or final:
                        return starts[i] + len(line)  # keep the closing line, then stop
                    return None
                depth = _brace_depth(line, depth, self.language)
            if i > 0 and line.strip() and indent_width(line) < shape.block_indent:
                closes_block = shape.closer_indent is not None and indent_width(line) == shape.closer_indent and is_closer_line(line)
                if not closes_block and not (braces and is_closer_line(line)):
                    return starts[i] - 1  # before this line and its line break
                if not braces and is_complete and not (next_line and line.strip() == next_line):
                    return starts[i] + len(line)  # keep the closing line, then stop
            if is_complete and next_line and whole.strip() == next_line and (i > 0 or not shape.line_before.strip()):
                return max(0, starts[i] - 1)
            if is_complete and i > 0:
                keep = repeated_lines_cut(whole_lines[: i + 1])
                if keep is not None:
                    return starts[keep] - 1
        if loop is not None:
            return line_start + loop
        return None


def _brace_depth(line: str, depth: int, language: Language) -> int:
    state, index = LineState(), 0
    while index < len(line):
        char = line[index]
        if not state.quote and not state.comment:
            depth += (char == "{") - (char == "}")
        index = step(state, line, index, language)
    return depth


def _closing_brace(line: str, depth: int, language: Language) -> int | None:
    """Index in ``line`` of the brace that takes the depth below zero (closes the cursor's block)."""
    state, index = LineState(), 0
    while index < len(line):
        char = line[index]
        if not state.quote and not state.comment:
            depth += (char == "{") - (char == "}")
            if depth < 0:
                return index
        index = step(state, line, index, language)
    return None
