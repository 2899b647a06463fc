"""Chunks of a file and what the context store reads in them, as pure functions of text.

A chunk is a line-aligned piece of a document (``MIN_CHUNK_LINES`` to ``MAX_CHUNK_LINES`` lines)
that starts on a top-level line (no indentation), so an edit moves no boundary but its own
chunk's and the unchanged chunks keep their text, hence their key (the document and a hash of the
text). Per chunk the store keeps the identifiers it uses and defines (for ranking) and the hashes
of its lines (for deduplication), computed once here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Hashable, Iterable
from urllib.parse import unquote, urlparse

MIN_CHUNK_LINES = 6
MAX_CHUNK_LINES = 24

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
# Names a chunk defines (Python, C-family and JavaScript-style declarations, top-level assignments).
_DEFINITION = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:pub[ \t]+)?(?:async[ \t]+)?(?:def|class|function|func|fn|struct|enum|interface|type|trait|const|let|var)"
    r"[ \t]+\*?([A-Za-z_][A-Za-z0-9_]*)|^([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?::[^=\n]*)?=[^=]",
    re.MULTILINE,
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Words every file shares: they say nothing about relevance.
_COMMON_WORDS = frozenset(
    "and def del elif else except false finally for from global import lambda none nonlocal not pass raise return "
    "self true try while with yield class async await cls print len str int float bool dict list set tuple "
    "const let var function new this null undefined void static public private protected struct enum "
    "include define ifdef endif typedef unsigned char long short double auto break case continue default "
    "goto sizeof switch extern inline package func type interface map chan range impl pub mut use mod fn "
    "then end local nil args kwargs value result data".split()
)



def identifiers(text: str) -> frozenset[str]:
    """Identifiers of at least three characters, minus keywords and words every file uses."""
    return frozenset(word for word in set(_IDENTIFIER.findall(text)) if word.lower() not in _COMMON_WORDS)


def definitions(text: str) -> frozenset[str]:
    return frozenset(a or b for a, b in _DEFINITION.findall(text))


def line_hashes(text: str) -> frozenset[int]:
    """Hashes of the lines that say something (stripped, at least 4 characters)."""
    return frozenset(hash(line) for line in (raw.strip() for raw in _LINE_BREAK.split(text)) if len(line) >= 4)


def _is_boundary(line: str, previous: str) -> bool:
    """A top-level line that may start a chunk: not indented, not a closer, not after a decorator."""
    return bool(line) and not line[0].isspace() and line[0] not in ")]}" and not previous.startswith("@")


def split_chunks(text: str) -> list[tuple[int, str]]:
    """(first line, text ending with "\\n") of each chunk of ``text``, "\\n" line breaks.

    A chunk ends before the first top-level line once it has ``MIN_CHUNK_LINES`` lines, and at
    ``MAX_CHUNK_LINES`` lines at the latest. Boundaries depend on the lines near them only, so
    an edit inside one chunk leaves the others' texts (and keys) unchanged."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    chunks: list[tuple[int, str]] = []
    start, previous = 0, ""
    for index, line in enumerate(lines):
        size = index - start
        if size >= MAX_CHUNK_LINES or (size >= MIN_CHUNK_LINES and _is_boundary(line, previous)):
            chunks.append((start, "\n".join(lines[start:index]) + "\n"))
            start = index
        if line.strip():
            previous = line
    if start < len(lines):
        chunks.append((start, "\n".join(lines[start:]) + "\n"))
    return chunks


def chunk_key(uri: str, text: str) -> Hashable:
    return (uri, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest())


def display_path(uri: str, roots: Iterable[str] = ()) -> str:
    """The path a chunk's header shows: relative to the first workspace root that holds it,
    else the file's name; non-file URIs keep their last segment."""
    parsed = urlparse(uri)
    path = unquote(parsed.path) if parsed.scheme in ("file", "") else uri
    for root in roots:
        root = root.rstrip("/") + "/"
        if path.startswith(root):
            return path[len(root) :]
    return path.rsplit("/", 1)[-1] or path


@dataclass(eq=False)
class Chunk:
    uri: str
    language_id: str
    first_line: int  # where it was when last chunked (for order and for "viewed"/"edited")
    text: str  # "\n" line breaks, ends with "\n"
    hashes: frozenset[int]
    words: frozenset[str]
    key: Hashable  # chunk_key(uri, text)
    defines: frozenset[str] = frozenset()

    @property
    def nbytes(self) -> int:
        return len(self.text.encode("utf-8", "surrogatepass"))
