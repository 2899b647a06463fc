"""Workspace files the editor never opened, for the context store: the files a document imports,
resolved inside the workspace folders. Python: ``import``/``from`` statements, absolute and
relative. JavaScript and TypeScript: relative specifiers only (``import ... from './x'``,
``export ... from``, ``import('./x')``, ``require('./x')``), resolved as Node and TypeScript
do (the exact file, then with an extension, then the folder's ``index``; ``./x.js`` may name
``x.ts``). C and C++: ``#include "x.h"`` from the document's folder, then each root and its
``include`` folder (``<x.h>`` is a system header). Only files of the document's language family
are taken (``languages.language_family``).

Safety contract of ``read_inside``: a file is read only when its real path (every symbolic link
resolved) lies inside the real path of a workspace root, it is a regular file, and it has at
most ``MAX_FILE_BYTES``; so a link inside the workspace that points out of it is never followed.
The functions here block (file system): callers run them in a worker thread.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import unquote, urlparse

from .languages import language_family, language_id_for_path

MAX_FILE_BYTES = 256 * 1024
MAX_IMPORTED_FILES = 16

_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+\(?([\w., \t]+)", re.MULTILINE)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w., \t]+)", re.MULTILINE)
# A relative module specifier after from/import/require: ``from './x'``, ``import './x'``, ``require('./x')``.
_JS_SPECIFIER = re.compile(r"""(?<![\w$.])(?:from|import|require)[ \t]*\(?[ \t]*(['"])(\.\.?/[^'"\n]*)\1""")
_JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
_C_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.MULTILINE)


def path_of_uri(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return Path(unquote(parsed.path))


def workspace_roots(root_uri: str | None, root_path: str | None, folder_uris: Iterable[str]) -> tuple[Path, ...]:
    """The workspace folders' real paths (folders first, then rootUri, then rootPath), existing
    directories only, without repeats."""
    candidates = [path_of_uri(uri) for uri in folder_uris]
    candidates.append(path_of_uri(root_uri) if root_uri else None)
    candidates.append(Path(root_path) if root_path else None)
    roots: list[Path] = []
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_dir() and real not in roots:
            roots.append(real)
    return tuple(roots)


def inside(path: Path, roots: Sequence[Path]) -> Path | None:
    """``path``'s real path if it is a regular file inside one of ``roots`` (real paths), else None."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not any(real.is_relative_to(root) for root in roots) or not real.is_file():
        return None
    return real


def read_inside(path: Path, roots: Sequence[Path], max_bytes: int = MAX_FILE_BYTES) -> str | None:
    """The text of ``path`` under the safety contract of the module docstring, else None."""
    real = inside(path, roots)
    if real is None:
        return None
    try:
        # O_NOFOLLOW: the checked real path must not have become a link since the check.
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError:
        return None
    if len(data) > max_bytes or b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")


def python_imports(text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(dots, module, imported names) of each import statement in text order; ``import a.b, c``
    gives two."""
    found: list[tuple[int, int, str, tuple[str, ...]]] = []  # (offset, dots, module, names)
    for match in _FROM_IMPORT.finditer(text):
        names = tuple(part.split()[0] for part in match.group(3).split(",") if part.split())
        found.append((match.start(), len(match.group(1)), match.group(2), names))
    for match in _IMPORT.finditer(text):
        for part in match.group(1).split(","):
            if part.split():
                found.append((match.start(), 0, part.split()[0], ()))
    return [(dots, module, names) for _, dots, module, names in sorted(found, key=lambda item: item[0])]


def _module_files(base: Path, module: str, names: tuple[str, ...]) -> list[Path]:
    folder = base.joinpath(*module.split(".")) if module else base
    files = [folder.with_suffix(".py"), folder / "__init__.py"] if module else []
    files += [folder / f"{name}.py" for name in names if name != "*"]  # from pkg import submodule
    return files


def python_import_files(document: Path, text: str, roots: Sequence[Path]) -> list[Path]:
    """Real paths of the workspace files that ``document`` imports, in import order, at most
    ``MAX_IMPORTED_FILES``. Absolute imports are looked up from each root, its ``src`` folder and
    the document's own folder (scripts importing siblings); relative ones from the document."""
    found: list[Path] = []
    for dots, module, names in python_imports(text):
        if dots:
            bases = [document.parents[dots - 1]] if dots - 1 < len(document.parents) else []  # . is the folder
        else:
            bases = [document.parent, *roots, *(root / "src" for root in roots)]
        for base in bases:
            for candidate in _module_files(base, module, names):
                real = inside(candidate, roots)
                if real is not None and real != document and real not in found:
                    found.append(real)
        if len(found) >= MAX_IMPORTED_FILES:
            break
    return found[:MAX_IMPORTED_FILES]


def javascript_imports(text: str) -> list[str]:
    """The relative module specifiers (``./x``, ``../y/z``) of ``text``, in text order, once each."""
    return list(dict.fromkeys(match.group(2) for match in _JS_SPECIFIER.finditer(text)))


def c_includes(text: str) -> list[str]:
    """The quoted includes (``#include "x.h"``) of ``text``, in text order, once each."""
    return list(dict.fromkeys(_C_INCLUDE.findall(text)))


def _first_inside(candidates: Iterable[Path], roots: Sequence[Path], family: str) -> Path | None:
    for candidate in candidates:
        real = inside(candidate, roots)
        if real is not None and language_family(language_id_for_path(real.name)) == family:
            return real
    return None


def _javascript_candidates(folder: Path, specifier: str) -> list[Path]:
    target = folder / specifier
    if target.name in ("", ".."):  # './' or '../': a folder's index
        return [target / f"index{ext}" for ext in _JS_EXTENSIONS]
    candidates = [target]
    if target.suffix in (".js", ".jsx", ".mjs", ".cjs"):  # TypeScript's ESM style: './x.js' is x.ts in the sources
        stem = target.with_suffix("")
        candidates += [stem.with_name(stem.name + ext) for ext in (".ts", ".tsx", ".mts", ".cts")]
    candidates += [target.with_name(target.name + ext) for ext in _JS_EXTENSIONS]
    candidates += [target / f"index{ext}" for ext in _JS_EXTENSIONS]
    return candidates


def import_files(document: Path, text: str, language_id: str, roots: Sequence[Path]) -> list[Path]:
    """Real paths of the workspace files that ``document`` (of ``language_id``) imports, in
    import order, at most ``MAX_IMPORTED_FILES``; none for a language without an import rule."""
    family = language_family(language_id)
    if family == "python":
        return python_import_files(document, text, roots)
    if family == "javascript":
        found = [_first_inside(_javascript_candidates(document.parent, spec), roots, family) for spec in javascript_imports(text)]
    elif family == "c":
        bases = [document.parent, *roots, *(root / "include" for root in roots)]
        found = [_first_inside((base / name for base in bases), roots, family) for name in c_includes(text)]
    else:
        return []
    unique = dict.fromkeys(path for path in found if path is not None and path != document)
    return list(unique)[:MAX_IMPORTED_FILES]


def has_imports(text: str, language_id: str) -> bool:
    """Whether ``text`` has an import that ``import_files`` would look up (cheap: no file system)."""
    family = language_family(language_id)
    if family == "python":
        return bool(python_imports(text))
    if family == "javascript":
        return _JS_SPECIFIER.search(text) is not None
    return family == "c" and _C_INCLUDE.search(text) is not None


def read_imported_files(
    document: Path, text: str, roots: Sequence[Path], max_bytes: int = MAX_FILE_BYTES, language_id: str = "python"
) -> list[tuple[Path, str]]:
    """(real path, text) of each readable imported file. Blocking: run it in a worker thread."""
    try:  # the document itself may be new and unsaved: its folder must exist in the workspace
        folder = document.parent.resolve(strict=True)
    except (OSError, RuntimeError):
        return []
    if not any(folder.is_relative_to(root) for root in roots):
        return []
    out = []
    for path in import_files(folder / document.name, text, language_id, roots):
        content = read_inside(path, roots, max_bytes)
        if content is not None:
            out.append((path, content))
    return out
