"""What the stop rules (and the extra-context block) need to know about a document's language.

Keyed by LSP ``languageId``. Unknown languages get a neutral entry: indentation rules, ``#``
and ``//`` both treated as line comments, the common quotes. A small lexer, ``scan``, walks one
line of code keeping bracket depth and string/comment state: brackets inside strings and
comments are not brackets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPENERS, CLOSERS = "([{", ")]}"


@dataclass(frozen=True)
class Language:
    line_comments: tuple[str, ...] = ("#", "//")
    quotes: str = "'\""
    braces: bool = False  # blocks end at a closing brace (C-like), not at a dedent (Python)
    comment_prefix: str = "#"  # how a line comment is written (extra-context path lines)


_PYTHON = Language(line_comments=("#",), quotes="'\"", braces=False, comment_prefix="#")
_C_LIKE = Language(line_comments=("//",), quotes="'\"", braces=True, comment_prefix="//")
_JS_LIKE = Language(line_comments=("//",), quotes="'\"`", braces=True, comment_prefix="//")
_NEUTRAL = Language()

LANGUAGES: dict[str, Language] = {
    "python": _PYTHON,
    "javascript": _JS_LIKE,
    "javascriptreact": _JS_LIKE,
    "typescript": _JS_LIKE,
    "typescriptreact": _JS_LIKE,
    "java": _C_LIKE,
    "c": _C_LIKE,
    "cpp": _C_LIKE,
    "csharp": _C_LIKE,
    "go": _JS_LIKE,  # Go's raw strings use backquotes
    "rust": _C_LIKE,
    "kotlin": _C_LIKE,
    "swift": _C_LIKE,
    "scala": _C_LIKE,
    "dart": _C_LIKE,
    "php": Language(line_comments=("//", "#"), quotes="'\"", braces=True, comment_prefix="//"),
    "shellscript": Language(line_comments=("#",), quotes="'\"", braces=False, comment_prefix="#"),
    "ruby": Language(line_comments=("#",), quotes="'\"", braces=False, comment_prefix="#"),
}


_EXTENSIONS = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascriptreact", ".ts": "typescript", ".tsx": "typescriptreact", ".java": "java", ".c": "c",
    ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cs": "csharp", ".go": "go", ".rs": "rust",
    ".kt": "kotlin", ".swift": "swift", ".scala": "scala", ".dart": "dart", ".php": "php", ".sh": "shellscript",
    ".rb": "ruby",
}  # fmt: skip


def language_of(language_id: str | None) -> Language:
    return LANGUAGES.get(language_id or "", _NEUTRAL)


def language_id_for_path(path: str) -> str:
    """The LSP languageId an editor would give a file of this name ("" when unknown)."""
    dot = path.rfind(".")
    return _EXTENSIONS.get(path[dot:].lower(), "") if dot >= 0 else ""


@dataclass
class LineState:
    """Lexer state inside one line: the open brackets and the string being read, if any."""

    stack: list[str] = field(default_factory=list)  # open brackets, innermost last
    quote: str = ""  # the quote of the string being read, "" outside strings
    comment: bool = False  # inside a line comment (to the end of the line)
    escaped: bool = False  # the previous character was a backslash inside a string

    def copy(self) -> "LineState":
        return LineState(list(self.stack), self.quote, self.comment, self.escaped)


def step(state: LineState, text: str, index: int, language: Language) -> int:
    """Advance ``state`` over the character at ``index`` of ``text`` (a comment opener of two
    characters is taken at once); return the index of the next character to read."""
    char = text[index]
    if state.comment:
        return index + 1
    if state.quote:
        if state.escaped:
            state.escaped = False
        elif char == "\\":
            state.escaped = True
        elif char == state.quote:
            state.quote = ""
        return index + 1
    for opener in language.line_comments:
        if text.startswith(opener, index):
            state.comment = True
            return index + len(opener)
    if char in language.quotes:
        state.quote = char
    elif char in OPENERS:
        state.stack.append(char)
    elif char in CLOSERS and state.stack:
        state.stack.pop()  # an unmatched closer leaves the (empty) stack as it is
    return index + 1


def scan(text: str, language: Language, state: LineState | None = None) -> LineState:
    """The state after reading ``text`` (one line) from ``state`` (a fresh line by default)."""
    state = state.copy() if state is not None else LineState()
    index = 0
    while index < len(text):
        index = step(state, text, index, language)
    return state


def unmatched_closers(text: str, language: Language) -> int:
    """Closing brackets in ``text`` (one line, read from a fresh state) with no opener before them."""
    state, count, index = LineState(), 0, 0
    while index < len(text):
        char = text[index]
        if not state.quote and not state.comment and char in CLOSERS and not state.stack:
            count += 1
        index = step(state, text, index, language)
    return count
