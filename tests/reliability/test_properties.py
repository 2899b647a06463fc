"""Property-based: random editor traffic against the real server process and the tiny model.

A hypothesis state machine opens documents, edits them (non-ASCII, surrogate pairs, CRLF and
lone CR, form feeds and U+2028, empty documents, huge lines, several changes per message, whole
replacements), asks for completions at valid and invalid positions without waiting for the
answers, cancels some of them, and closes documents. After every step:

- the server process is alive;
- for every open document, the server's text (SHA-256 through ``santacoder/documentState``)
  and version equal the client's, which this file keeps with its own position arithmetic;

and whenever requests settle:

- every request got a response: a result, or the cancellation error for cancelled ones;
- an answer with an item names the document version the request was sent for (the item's
  command carries it), never an older one, and sits at the requested position.

``RELIABILITY_EXAMPLES`` / ``RELIABILITY_STEPS`` make the run longer (defaults keep CI short).
"""

from __future__ import annotations

import bisect
import concurrent.futures
import hashlib
import itertools
import os
import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.protocol.harness import plain
from tests.reliability.client import BackgroundClient

REQUEST_CANCELLED = -32800
SETTLE_TIMEOUT_S = 120
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# -- the client's own model of a document (independent of lsp_server.documents) -----------------


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def line_starts(text: str) -> list[int]:
    return [0] + [match.end() for match in _LINE_BREAK.finditer(text)]


def boundaries(text: str) -> list[int]:
    """Indices a client can name with a position: every index except inside a CRLF pair."""
    return [i for i in range(len(text) + 1) if not (0 < i < len(text) and text[i - 1] == "\r" and text[i] == "\n")]


def position_of(text: str, index: int) -> types.Position:
    starts = line_starts(text)
    line = bisect.bisect_right(starts, index) - 1
    return types.Position(line=line, character=utf16_units(text[starts[line] : index]))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- strategies ---------------------------------------------------------------------------------

PIECES = ["a", "x", "_", "(", ")", ":", " ", "    ", "\t", "\n", "\r\n", "\r", "def ", "return ", "é", "中", "😀", "𝒳",
          "\u2028", "\x0c", "\ufeff", "#", '"', "\\"]  # fmt: skip
edit_text = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
document_text = st.one_of(
    st.just(""),
    edit_text,
    st.just("def add(a, b):\r\n    return a + b\r\n"),
    st.just("import os\n\n\ndef main():\n    \n"),
    st.integers(2_000, 20_000).map(lambda n: "x = '" + "ab😀" * (n // 3) + "'\n"),  # a huge line
)


@pytest.fixture(scope="module")
def server():
    # No token floor: on random text the tiny model is rarely sure, and this test needs answers.
    options = {"model": "tiny", "debounceMs": 0, "maxNewTokens": 12, "maxNewTokensSingleLine": 12, "minTokenConfidence": 0}
    client = BackgroundClient(options)
    try:
        state = client.wait_for_model()
        assert state == "ready", f"the tiny model did not load: {state}"
        yield client
    finally:
        client.close()


# -- the state machine --------------------------------------------------------------------------


@dataclass
class Pending:
    uri: str
    version: int
    position: types.Position | None  # None: an invalid position, any placement is acceptable
    cancelled: bool
    future: concurrent.futures.Future


_uris = itertools.count()


class EditorTraffic(RuleBasedStateMachine):
    client: BackgroundClient  # set by the test below
    seen = {"requests": 0, "items": 0, "cancelled": 0}  # over the whole run, so the test is not vacuous

    def __init__(self) -> None:
        super().__init__()
        self.documents: dict[str, tuple[str, int]] = {}  # uri -> (text, version)
        self.pending: list[Pending] = []

    # -- rules ----------------------------------------------------------------------------
    @rule(text=document_text, version=st.integers(0, 1_000))
    def open_document(self, text: str, version: int) -> None:
        uri = f"file:///prop/doc{next(_uris)}.py"
        item = types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)
        self.client.notify("textDocument/didOpen", types.DidOpenTextDocumentParams(text_document=item))
        self.documents[uri] = (text, version)

    @precondition(lambda self: self.documents)
    @rule(data=st.data(), count=st.integers(1, 3))
    def edit(self, data: st.DataObject, count: int) -> None:
        uri = data.draw(st.sampled_from(sorted(self.documents)))
        text, version = self.documents[uri]
        changes = []
        for _ in range(count):  # applied in order, each against the text the previous one left
            marks = boundaries(text)
            start = data.draw(st.sampled_from(marks))
            end = data.draw(st.sampled_from([mark for mark in marks if mark >= start][:40]))
            new = data.draw(edit_text)
            changes.append(
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=position_of(text, start), end=position_of(text, end)), text=new
                )
            )
            text = text[:start] + new + text[end:]
        version += data.draw(st.integers(1, 3))
        self._change(uri, text, version, changes)

    @precondition(lambda self: self.documents)
    @rule(data=st.data(), text=document_text)
    def replace_all(self, data: st.DataObject, text: str) -> None:
        uri = data.draw(st.sampled_from(sorted(self.documents)))
        version = self.documents[uri][1] + 1
        self._change(uri, text, version, [types.TextDocumentContentChangeWholeDocument(text=text)])

    @precondition(lambda self: self.documents)
    @rule(data=st.data(), valid=st.booleans(), cancel=st.booleans())
    def complete(self, data: st.DataObject, valid: bool, cancel: bool) -> None:
        uri = data.draw(st.sampled_from(sorted(self.documents)))
        text, version = self.documents[uri]
        if valid:
            position = position_of(text, data.draw(st.sampled_from(boundaries(text))))
        else:
            lines = len(line_starts(text))
            line = data.draw(st.sampled_from([lines - 1, lines, lines + 5, 2**31 - 1]))
            position = types.Position(line=line, character=data.draw(st.sampled_from([0, 10_000, 2**31 - 1])))
        trigger = data.draw(st.sampled_from(list(types.InlineCompletionTriggerKind)))
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
        msg_id, future = self.client.send("textDocument/inlineCompletion", params)
        if cancel:
            self.client.notify("$/cancelRequest", types.CancelParams(id=msg_id))
        self.pending.append(Pending(uri, version, position if valid else None, cancel, future))

    @precondition(lambda self: self.documents)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        uri = data.draw(st.sampled_from(sorted(self.documents)))
        self.client.notify("textDocument/didClose", types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
        del self.documents[uri]

    @rule()
    def settle(self) -> None:
        """Wait for every outstanding answer and check it."""
        for pending in self.pending:
            self.seen["requests"] += 1
            try:
                result = pending.future.result(SETTLE_TIMEOUT_S)
            except JsonRpcException as error:
                code = getattr(error, "code", None)
                assert pending.cancelled and code == REQUEST_CANCELLED, f"unexpected error for {pending}: {error!r}"
                self.seen["cancelled"] += 1
                continue
            items = [] if result is None else list(result.items if hasattr(result, "items") else result)
            self.seen["items"] += len(items)
            for item in items:
                answered_version = item.command.arguments[1]
                assert answered_version == pending.version, f"answer for version {answered_version}, request was for {pending.version}"
                if pending.position is not None:
                    assert item.range.start == pending.position and item.range.end == pending.position
                assert isinstance(item.insert_text, str) and item.insert_text
        self.pending.clear()

    def _change(self, uri: str, text: str, version: int, changes: list) -> None:
        params = types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version), content_changes=changes
        )
        self.client.notify("textDocument/didChange", params)
        self.documents[uri] = (text, version)

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def server_alive_and_in_sync(self) -> None:
        assert self.client.alive(), "the server process exited"
        for uri, (text, version) in self.documents.items():
            state = plain(self.client.request("santacoder/documentState", {"uri": uri}))
            assert state is not None, f"the server forgot {uri}"
            assert (state["version"], state["length"], state["sha256"]) == (version, len(text), sha256(text)), (
                f"{uri}: server holds version {state['version']} length {state['length']}, "
                f"client holds version {version} length {len(text)}: {text[:200]!r}"
            )

    def teardown(self) -> None:
        self.settle()
        for uri in list(self.documents):
            self.client.notify("textDocument/didClose", types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
        for uri in self.documents:  # closed documents are gone from the server
            assert self.client.request("santacoder/documentState", {"uri": uri}) is None
        assert self.client.alive()


def test_random_editor_traffic_keeps_the_server_alive_and_in_sync(server):
    EditorTraffic.client = server
    machine_settings = settings(
        max_examples=int(os.environ.get("RELIABILITY_EXAMPLES", "12")),
        stateful_step_count=int(os.environ.get("RELIABILITY_STEPS", "25")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(EditorTraffic, settings=machine_settings)
    counts = plain(server.request("santacoder/stats", None))
    print("client side:", EditorTraffic.seen, "server side:", {k: v for k, v in counts.items() if isinstance(v, int)})
    assert EditorTraffic.seen["requests"] > 0 and EditorTraffic.seen["items"] > 0, EditorTraffic.seen
    assert counts["errors"] == 0, counts


@pytest.mark.parametrize(
    ("text", "start", "end", "new", "expected"),
    [
        ("\u2028a", (0, 0), (0, 2), "", ""),  # U+2028 is not an LSP line break
        ("abc\ndef", (0, 1), (0, 99), "X", "aX\ndef"),  # a column past the end means the end of the line
        ("abc", (0, 1), (0, 99), "X", "aX"),  # ... also on a last line without a line break (pygls: "aXc")
        ("a\x0cb\r\nc", (0, 3), (1, 1), "", "a\x0cb"),  # form feed inside a line, CRLF after it
        ("x😀y", (0, 1), (0, 3), "", "xy"),  # UTF-16 columns around a surrogate pair
    ],
)
def test_changes_that_pygls_would_clamp_reach_our_store_unchanged(server, text, start, end, new, expected):
    uri = f"file:///prop/fixed{next(_uris)}.py"
    server.notify("textDocument/didOpen", types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    change = types.TextDocumentContentChangePartial(range=types.Range(start=types.Position(*start), end=types.Position(*end)), text=new)
    server.notify("textDocument/didChange", types.DidChangeTextDocumentParams(text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2), content_changes=[change]))
    state = plain(server.request("santacoder/documentState", {"uri": uri}))
    server.notify("textDocument/didClose", types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    assert (state["version"], state["sha256"]) == (2, sha256(expected)), f"server length {state['length']}, expected {expected!r}"
