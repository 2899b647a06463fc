"""What the headless command (``santacoder-lsp complete FILE ...``) checks before it asks for
a completion (that the file is text it can decode, and that the position is in it), and the
extra context it gives the completion, as the editor would: ``--context-file`` files are other
open documents, and the files FILE imports are read from inside the workspace (``--workspace``,
by default FILE's folder) under ``workspace_files``' boundary checks.

Each problem is an ``InputError`` whose message is one line that says what to do; the entry
point prints it (no usage text: the command line was fine, the file or position was not) and
exits non-zero.

Decoding, in order: a PEP 263 coding cookie in the first two lines (``# -*- coding: cp1252 -*-``),
UTF-8 (a byte-order mark is dropped), then Latin-1 when the bytes read as Latin-1 text (no
control characters but tab, line breaks and form feed). What is left is refused, as is a file
with NUL bytes (binary).
"""

from __future__ import annotations

import argparse
import codecs
import logging
import re
from pathlib import Path

from lsprotocol import types

from .context_feed import ContextFeed
from .context_store import ContextStore
from .documents import Document, index_to_column
from .languages import language_family, language_id_for_path
from .workspace_files import path_of_uri

log = logging.getLogger(__name__)

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


def add_context_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("extra context (chunks of other files before the prompt; --extra-context-tokens 0 turns it off)")
    group.add_argument("--context-file", action="append", type=Path, default=[], metavar="PATH",
                       help="a file to treat as another open document (repeatable)")  # fmt: skip
    group.add_argument("--workspace", type=Path, metavar="DIR",
                       help="the workspace folder: files that FILE imports are read from inside it (default: FILE's folder)")  # fmt: skip


def read_context_files(paths: list[Path], document: Document) -> list[Document]:
    """The ``--context-file`` documents, each with the languageId of its name; FILE itself and
    repeats are left out. A file it cannot read is an ``InputError``, as FILE would be."""
    out: dict[str, Document] = {}
    for path in paths:
        text, _ = read_source(path)
        uri = path.resolve().as_uri()
        if uri != document.uri:
            out[uri] = Document(uri, text, language_id=language_id_for_path(path.name))
    return list(out.values())


def workspace_folder(file: Path, workspace: Path | None) -> Path:
    """``--workspace`` (a folder that exists) or, without it, FILE's folder."""
    if workspace is None:
        return file.resolve().parent
    if not workspace.is_dir():
        raise InputError(f"--workspace {workspace} is not a folder: give the project's folder")
    return workspace.resolve()


async def feed_context(store: ContextStore, document: Document, others: list[Document], workspace: Path) -> None:
    """Fill ``store`` as the server's feed would: ``others`` open, then ``document`` opened in
    ``workspace`` (its imports read, inside it only). Waits for the import reads."""
    family = language_family(document.language_id)
    texts = {other.uri: other.text for other in others}
    texts[document.uri] = document.text
    feed = ContextFeed(store, texts.get)
    feed.set_workspace(workspace.as_uri(), None, None)
    for other in others:
        if language_family(other.language_id) != family:
            log.warning("--context-file %s is not used: its language (%s) is not FILE's (%s)", other.uri, other.language_id or "unknown", document.language_id)
        store.opened(other.uri, other.language_id, other.text)
    path = path_of_uri(document.uri)
    if path is not None and not path.parent.is_relative_to(workspace):
        log.warning("%s is not inside --workspace %s: the files it imports are not read", path, workspace)
    feed.opened(types.TextDocumentItem(uri=document.uri, language_id=document.language_id, version=document.version, text=document.text))
    await feed.settle()
