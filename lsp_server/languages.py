"""What the stop rules and the extra-context block need to know about a document's language.

The one table of language facts, keyed by LSP ``languageId``: line comments (for the lexer, and
the one a chunk's path header is written in), quotes, whether blocks end at a brace, which
languages may feed each other context (``language_family``), and the languageId an editor gives
a file name. An unknown language gets a neutral entry: indentation rules, ``#`` and ``//`` both
read as line comments, the common quotes, and no comment syntax to write, so no extra context
(a chunk could not carry its path header). A small lexer, ``scan``, walks one line of code
keeping bracket depth and string/comment state: brackets inside strings and comments are not
brackets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPENERS, CLOSERS = "([{", ")]}"


@dataclass(frozen=True)
class Language:
    line_comments: tuple[str, ...] = ("#", "//")
    quotes: str = "'\""
    braces: bool = False  # blocks end at a closing brace (C-like), not at a dedent (Python)
    comment_prefix: str | None = None  # how a line comment is written (extra-context path lines); None: unknown


def _commented(prefix: str, quotes: str = "'\"", braces: bool = False) -> Language:
    return Language(line_comments=(prefix,), quotes=quotes, braces=braces, comment_prefix=prefix)


_PYTHON = _commented("#")
_HASH = _commented("#")  # shells, Ruby, YAML ...: blocks by keyword or indentation
_HASH_BRACES = _commented("#", braces=True)  # Perl, R, PowerShell
_C_LIKE = _commented("//", braces=True)
_JS_LIKE = _commented("//", "'\"`", braces=True)
_DASHES = _commented("--")  # Lua, SQL, Ada
_DASHES_NO_CHARS = _commented("--", '"')  # Haskell, Elm: a quote may end a name (foldl')
_LISP = _commented(";", '"')  # a quote quotes a form, it opens no string
_PERCENT = _commented("%")
_NEUTRAL = Language()

LANGUAGES: dict[str, Language] = {
    "python": _PYTHON,
    **dict.fromkeys(("javascript", "javascriptreact", "typescript", "typescriptreact", "go"), _JS_LIKE),  # Go: raw strings in backquotes
    **dict.fromkeys(("java", "c", "cpp", "cuda-cpp", "objective-c", "objective-cpp", "csharp", "rust", "kotlin"), _C_LIKE),
    **dict.fromkeys(("swift", "scala", "dart", "groovy", "zig", "solidity", "proto"), _C_LIKE),
    "php": Language(line_comments=("//", "#"), quotes="'\"", braces=True, comment_prefix="//"),
    "verilog": _commented("//"),  # begin/end blocks
    **dict.fromkeys(("shellscript", "ruby", "julia", "elixir", "makefile", "dockerfile", "yaml", "toml", "coffeescript", "nim", "crystal"), _HASH),
    **dict.fromkeys(("perl", "r", "powershell"), _HASH_BRACES),
    **dict.fromkeys(("lua", "sql", "ada"), _DASHES),
    **dict.fromkeys(("haskell", "elm"), _DASHES_NO_CHARS),
    **dict.fromkeys(("clojure", "lisp", "scheme", "racket"), _LISP),
    **dict.fromkeys(("latex", "tex", "erlang", "matlab", "prolog"), _PERCENT),
    "vim": _commented('"', "'"),
    "fortran": _commented("!"),
    "bat": _commented("::", '"'),
}

# Languages whose files may feed each other context (a .ts file imports .js ones); the others
# only themselves.
_FAMILIES = {
    "javascriptreact": "javascript", "typescript": "javascript", "typescriptreact": "javascript",
    "cpp": "c", "cuda-cpp": "c", "objective-c": "c", "objective-cpp": "c",
}  # fmt: skip

_EXTENSIONS = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascriptreact", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescriptreact",
    ".java": "java", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hh": "cpp", ".hpp": "cpp",
    ".hxx": "cpp", ".cu": "cuda-cpp", ".cs": "csharp", ".go": "go", ".rs": "rust", ".kt": "kotlin", ".swift": "swift",
    ".scala": "scala", ".dart": "dart", ".php": "php", ".sh": "shellscript", ".bash": "shellscript", ".rb": "ruby",
    ".lua": "lua", ".pl": "perl", ".pm": "perl", ".r": "r", ".jl": "julia", ".ex": "elixir", ".exs": "elixir",
    ".ps1": "powershell", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".sql": "sql", ".hs": "haskell",
    ".elm": "elm", ".clj": "clojure", ".scm": "scheme", ".rkt": "racket", ".tex": "latex", ".erl": "erlang",
    ".vim": "vim", ".f90": "fortran", ".bat": "bat", ".cmd": "bat", ".zig": "zig", ".sol": "solidity",
    ".proto": "proto", ".groovy": "groovy", ".coffee": "coffeescript", ".nim": "nim", ".cr": "crystal",
}  # fmt: skip


def language_of(language_id: str | None) -> Language:
    return LANGUAGES.get(language_id or "", _NEUTRAL)


def language_family(language_id: str) -> str:
    """The languages that may feed a document of ``language_id`` context share this name."""
    return _FAMILIES.get(language_id, language_id)


def language_id_for_path(path: str) -> str:
    """The LSP languageId an editor would give a file of this name ("" when unknown)."""
    dot = path.rfind(".")
    return _EXTENSIONS.get(path[dot:].lower(), "") if dot > path.rfind("/") else ""


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
