"""What the headless command (``santacoder-lsp complete FILE ...``) checks before it asks for
a completion: that the file is text it can decode, and that the position is in it.

Each problem is an ``InputError`` whose message is one line that says what to do; the entry
point prints it (no usage text: the command line was fine, the file or position was not) and
exits non-zero.

Decoding, in order: a PEP 263 coding cookie in the first two lines (``# -*- coding: cp1252 -*-``),
UTF-8 (a byte-order mark is dropped), then Latin-1 when the bytes read as Latin-1 text (no
control characters but tab, line breaks and form feed). What is left is refused, as is a file
with NUL bytes (binary).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from lsprotocol import types

from .documents import Document, index_to_column

_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)
# C0 controls but tab, LF, FF, CR; DEL; C1 controls: not in Latin-1 text
_NOT_LATIN1_TEXT = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


class InputError(Exception):
    """A file or position the headless command cannot use; the message is one line."""


def read_source(path: Path) -> tuple[str, str]:
    """(text, encoding used) of ``path``, line breaks as they are."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path} is a directory: give a source file") from None
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: check the path") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
    if b"\x00" in data:
        raise InputError(f"{path} looks binary (it has NUL bytes): give a text file")
    declared = _declared_encoding(data)
    if declared is not None:
        try:
            return data.decode(declared), declared
        except UnicodeDecodeError as error:
            raise InputError(f"{path} declares coding {declared} but byte {error.start} is not {declared}: fix the coding line") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as error:
        utf8_error = error
    if _NOT_LATIN1_TEXT.search(data) is None:
        return data.decode("latin-1"), "latin-1"
    raise InputError(
        f"{path} is not UTF-8 (byte {utf8_error.start} is 0x{data[utf8_error.start]:02x}) nor Latin-1 text: "
        f"convert it to UTF-8, or declare its encoding in a coding line (# -*- coding: cp1252 -*-)"
    )


def _declared_encoding(data: bytes) -> str | None:
    """The PEP 263 cookie of the first two lines, as a codec name; an unknown codec is an error."""
    head = b"\n".join(data.splitlines()[:2])
    match = _COOKIE.search(head)
    if match is None:
        return None
    name = match.group(1).decode("ascii", "replace")
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise InputError(f"the coding line names {name!r}, which Python does not know: fix the coding line") from None


def check_position(document: Document, path: Path, line: int, character: int) -> int:
    """The offset of (``line``, ``character``) in UTF-16 units, as in LSP; a position outside
    the file is an ``InputError`` (the server clamps such positions, a command should say)."""
    if line < 0 or character < 0:
        raise InputError(f"--line {line} --character {character}: positions are 0-based and cannot be negative")
    lines = document.line_count
    if line >= lines:
        raise InputError(f"--line {line} is past the end of {path}, which has {lines} line{'s' if lines != 1 else ''} (0 to {lines - 1})")
    text = document.line_text(line)
    width = index_to_column(text, len(text), "utf-16")
    if character > width:
        raise InputError(f"--character {character} is past the end of line {line} of {path}, which is {width} UTF-16 units long")
    return document.offset_at(types.Position(line=line, character=character))
