"""Workspace files for the context store: imports (Python, JavaScript/TypeScript, C/C++) resolved
inside the workspace, never outside, never through a link that leaves it; size limits; the feed
adds them to the store."""

from __future__ import annotations

import asyncio
import os

import pytest
from lsprotocol import types

from lsp_server.context_feed import ContextFeed
from lsp_server.context_store import ContextStore
from lsp_server.workspace_files import (
    c_includes,
    has_imports,
    import_files,
    javascript_imports,
    python_import_files,
    python_imports,
    read_imported_files,
    read_inside,
    workspace_roots,
)  # fmt: skip

BODY = "".join(f"def helper_{i}(value):\n    doubled = value * 2\n    tripled = value * 3\n    return doubled + tripled\n\n" for i in range(3))


@pytest.fixture()
def workspace(tmp_path):
    root = tmp_path / "project"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sibling.py").write_text(BODY)
    (root / "pkg" / "sub" / "deep.py").write_text(BODY.replace("helper", "deep"))
    (root / "toplevel.py").write_text(BODY.replace("helper", "top"))
    outside = tmp_path / "secret.py"
    outside.write_text(BODY.replace("helper", "secret"))
    (root / "pkg" / "leak.py").symlink_to(outside)  # a link inside the workspace, pointing out
    (root / "pkg" / "alias.py").symlink_to(root / "toplevel.py")  # a link that stays inside
    (root / "pkg" / "big.py").write_text("x = 1\n" * 100_000)
    return root


def test_imports_are_parsed_with_their_level_module_and_names():
    text = "import os, pkg.sibling as s\nfrom . import sibling, leak\nfrom ..up import thing\nfrom pkg.sub import (deep,\n"
    assert python_imports(text) == [
        (0, "os", ()), (0, "pkg.sibling", ()), (1, "", ("sibling", "leak")), (2, "up", ("thing",)), (0, "pkg.sub", ("deep",)),
    ]  # fmt: skip


def test_imports_resolve_inside_the_workspace_and_never_through_a_link_out_of_it(workspace):
    roots = workspace_roots(workspace.as_uri(), None, [])
    document = workspace / "pkg" / "main.py"
    text = "import toplevel\nfrom . import sibling, leak, alias\nfrom .sub import deep\nimport os\nfrom pkg import big\n"
    document.write_text(text)
    found = python_import_files(document, text, roots)
    names = [path.relative_to(workspace).as_posix() for path in found]
    assert names == ["toplevel.py", "pkg/sibling.py", "pkg/sub/deep.py", "pkg/__init__.py", "pkg/big.py"]  # alias is toplevel, once
    assert all("secret" not in name for name in names)
    read = dict(read_imported_files(document, text, roots, max_bytes=64 * 1024))
    assert workspace / "pkg" / "big.py" not in read  # over the size limit
    assert "def helper_0" in read[workspace / "pkg" / "sibling.py"]


def test_read_inside_refuses_links_out_missing_files_and_folders(workspace, tmp_path):
    roots = (workspace.resolve(),)
    assert read_inside(workspace / "pkg" / "leak.py", roots) is None
    assert read_inside(tmp_path / "secret.py", roots) is None
    assert read_inside(workspace / "pkg" / "missing.py", roots) is None
    assert read_inside(workspace / "pkg", roots) is None
    assert read_inside(workspace / "pkg" / "alias.py", roots).startswith("def top_0")
    assert read_inside(workspace / "pkg" / ".." / ".." / "secret.py", roots) is None


def test_a_document_outside_the_workspace_reads_nothing(workspace, tmp_path):
    roots = (workspace.resolve(),)
    stray = tmp_path / "stray.py"
    stray.write_text("from project import toplevel\n")
    assert read_imported_files(stray, stray.read_text(), roots) == []


def test_workspace_roots_prefers_folders_and_skips_what_is_not_a_folder(workspace, tmp_path):
    folder = types.WorkspaceFolder(uri=(workspace / "pkg").as_uri(), name="pkg")
    roots = workspace_roots(workspace.as_uri(), str(tmp_path / "nope"), [folder.uri, "untitled:x"])
    assert roots == ((workspace / "pkg").resolve(), workspace.resolve())


def test_the_feed_adds_imported_files_to_the_store_off_the_event_loop(workspace):
    document = workspace / "pkg" / "main.py"
    text = "from . import sibling, leak\n\nvalue = helper_1(2)\n" + "\n" * 3
    texts = {document.as_uri(): text}

    async def scenario() -> ContextStore:
        store = ContextStore()
        feed = ContextFeed(store, texts.get)
        feed.set_workspace(workspace.as_uri(), None, None)
        feed.opened(types.TextDocumentItem(uri=document.as_uri(), language_id="python", version=1, text=text))
        await feed.settle()
        return store

    store = asyncio.run(scenario())
    uris = {chunk.uri for chunk in store.chunks()}
    assert (workspace / "pkg" / "sibling.py").resolve().as_uri() in uris
    assert not any("secret" in uri or "leak" in uri for uri in uris)
    block = store.choose(document.as_uri(), text, 0, 2, 200, lambda s: len(s.split()))
    assert block.text.startswith("# pkg/sibling.py\ndef helper_")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_workspace_root_that_is_itself_a_link_is_resolved(workspace, tmp_path):
    link = tmp_path / "link-to-project"
    link.symlink_to(workspace)
    roots = workspace_roots(link.as_uri(), None, [])
    assert roots == (workspace.resolve(),)
    assert read_inside(link / "pkg" / "sibling.py", roots) is not None


# -- JavaScript/TypeScript relative imports and C/C++ quoted includes ------------------------------

JS_BODY = "".join(f"export function widget_{i}(value) {{\n  const doubled = value * 2;\n  const tripled = value * 3;\n  return doubled + tripled;\n}}\n\n" for i in range(3))
C_BODY = "".join(f"static int gadget_{i}(int value) {{\n    int doubled = value * 2;\n    int tripled = value * 3;\n    return doubled + tripled;\n}}\n\n" for i in range(3))
APP_TS = """import { widget_1 } from './util';
import * as lib from "./lib";
import { esm } from './esm.js';
import './styles.css';
import React from 'react';
import { leak } from './leak';
import { secret } from '../../secret';
const cjs = require('./cjs');
const lazy = await import("../shared/lazy");
export { widget_2 } from './util';
"""
MAIN_C = """#include <stdio.h>
#include "util.h"
# include "sub/deep.h"
#include "api.h"
#include "leak.h"
#include "../../secret.h"
"""


@pytest.fixture()
def polyglot(tmp_path):
    root = tmp_path / "project"
    for folder in ("web/lib", "shared", "csrc/sub", "include"):
        (root / folder).mkdir(parents=True)
    files = {
        "web/util.ts": JS_BODY, "web/lib/index.js": JS_BODY.replace("widget", "libwidget"), "web/esm.ts": JS_BODY.replace("widget", "esm"),
        "web/styles.css": "body { color: red; }\n", "web/cjs.js": JS_BODY.replace("widget", "cjs"),
        "shared/lazy.tsx": JS_BODY.replace("widget", "lazy"), "csrc/util.h": C_BODY, "csrc/sub/deep.h": C_BODY.replace("gadget", "deep"),
        "include/api.h": C_BODY.replace("gadget", "api"),
    }  # fmt: skip
    for name, text in files.items():
        (root / name).write_text(text)
    (tmp_path / "secret.ts").write_text(JS_BODY.replace("widget", "secret"))
    (tmp_path / "secret.h").write_text(C_BODY.replace("gadget", "secret"))
    (root / "web" / "leak.ts").symlink_to(tmp_path / "secret.ts")  # inside the workspace, pointing out
    (root / "csrc" / "leak.h").symlink_to(tmp_path / "secret.h")
    return root


def test_javascript_specifiers_and_c_includes_are_parsed_relative_and_quoted_only():
    assert javascript_imports(APP_TS) == ["./util", "./lib", "./esm.js", "./styles.css", "./leak", "../../secret", "./cjs", "../shared/lazy"]
    assert javascript_imports("foo.import('./x'); myrequire('./y'); import x from 'pkg'\n") == []
    assert c_includes(MAIN_C) == ["util.h", "sub/deep.h", "api.h", "leak.h", "../../secret.h"]
    assert has_imports(APP_TS, "typescriptreact") and has_imports(MAIN_C, "cpp") and not has_imports(MAIN_C, "rust")
    assert not has_imports("import React from 'react';\n", "javascript")


def test_javascript_imports_resolve_like_node_inside_the_workspace_only(polyglot):
    roots = workspace_roots(polyglot.as_uri(), None, [])
    found = import_files(polyglot / "web" / "app.ts", APP_TS, "typescript", roots)
    names = [path.relative_to(polyglot).as_posix() for path in found]
    assert names == ["web/util.ts", "web/lib/index.js", "web/esm.ts", "web/cjs.js", "shared/lazy.tsx"]  # no .css, no link out, no ../..


def test_c_includes_resolve_from_the_folder_then_the_roots_include_folder(polyglot):
    roots = workspace_roots(polyglot.as_uri(), None, [])
    found = import_files(polyglot / "csrc" / "main.cpp", MAIN_C, "cpp", roots)
    assert [path.relative_to(polyglot).as_posix() for path in found] == ["csrc/util.h", "csrc/sub/deep.h", "include/api.h"]
    assert import_files(polyglot / "csrc" / "main.rs", MAIN_C, "rust", roots) == []


def test_the_feed_adds_a_typescript_documents_imports_with_their_own_languages(polyglot):
    document = polyglot / "web" / "app.ts"
    text = APP_TS + "\nconst total = widget_1(2) + cjs_0(3);\n"
    texts = {document.as_uri(): text}

    async def scenario() -> ContextStore:
        store = ContextStore()
        feed = ContextFeed(store, texts.get)
        feed.set_workspace(polyglot.as_uri(), None, None)
        feed.opened(types.TextDocumentItem(uri=document.as_uri(), language_id="typescript", version=1, text=text))
        await feed.settle()
        return store

    store = asyncio.run(scenario())
    languages = {chunk.uri.rsplit("/", 1)[-1]: chunk.language_id for chunk in store.chunks() if chunk.uri != document.as_uri()}
    assert languages == {"util.ts": "typescript", "index.js": "javascript", "esm.ts": "typescript", "cjs.js": "javascript", "lazy.tsx": "typescriptreact"}
    block = store.choose(document.as_uri(), text, 0, 11, 400, lambda s: len(s.split()))
    assert "// web/util.ts\nexport function widget_" in block.text and "// web/cjs.js\n" in block.text
    assert "secret" not in block.text
