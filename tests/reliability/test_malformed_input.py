"""Malformed input over stdio: bad framing, bodies that are not JSON or not JSON-RPC, params of
the wrong type, unknown methods, and document traffic that does not fit the documents open.

One server (with the scripted engine) takes all of it in turn; after each case it must still
be alive, answer a normal completion correctly, have answered every request it was sent (with
a result or an error), have logged what was wrong, and have logged no traceback.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.protocol.harness import fake_model
from tests.reliability.rawclient import ServerProcess, frame

RULES = [{"after": "x = ", "text": "42"}]
HEALTH_URI = "file:///w/health.py"  # no test touches it: the check after each case uses it
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, NOT_INITIALIZED = -32700, -32600, -32601, -32602, -32002


@pytest.fixture(scope="module")
def server():
    with ServerProcess() as process:
        process.connection.initialize({"model": fake_model(rules=RULES)})
        process.connection.open(HEALTH_URI, "x = \n")
        yield process


@pytest.fixture()
def mark(server) -> int:
    """Where this test's part of the log starts."""
    return len(server.stderr)


def still_serving(server: ServerProcess, mark: int) -> None:
    connection = server.connection
    assert server.alive(), server.stderr[mark:]
    answer = connection.inline(HEALTH_URI, 0, 4)
    assert [item["insertText"] for item in answer["result"]["items"]] == ["42"]
    assert connection.stats()["model"]["state"] == "ready"  # a request without params, too
    assert connection.unanswered() == []
    assert "Traceback" not in server.stderr[mark:]


def null_id_errors(server: ServerProcess) -> list[dict]:
    return [m["error"] for m in server.connection.messages if "id" in m and m["id"] is None and "error" in m]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_state(server: ServerProcess, uri: str):
    answer = server.connection.request("santacoder/documentState", {"uri": uri})
    assert "result" in answer, answer
    return answer["result"]


# -- bodies that are not JSON-RPC messages ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"this is not json", b'{"jsonrpc": "2.0", "id": 99, "method": "santacoder/st', b'{"jsonrpc": "2.0", "id": 98, "method": "\xff\xfe"}', b""],
    ids=["garbage", "truncated-object", "invalid-utf8", "empty"],
)
def test_a_body_that_is_not_json_gets_a_parse_error_and_a_log_line(server, mark, body):
    before = len(null_id_errors(server))
    server.connection.send_bytes(frame(body))
    server.wait_for_log("not JSON", after=mark)
    still_serving(server, mark)
    errors = null_id_errors(server)[before:]
    assert [error["code"] for error in errors] == [PARSE_ERROR]  # JSON-RPC: id null when it is unknown


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([{"jsonrpc": "2.0", "id": "raw-97", "method": "santacoder/stats"}], "not an array"),
        (42, "not a number"),
        ("initialize", "not a string"),
        (None, "not null"),
        ({"jsonrpc": "2.0", "id": "raw-96"}, "neither a request"),
        ({"jsonrpc": "2.0", "id": True, "method": "santacoder/stats"}, '"id" must be'),
        ({"jsonrpc": "2.0", "id": "raw-95", "method": 7}, '"method" must be a string'),
        ({"jsonrpc": "2.0", "id": "raw-94", "method": "santacoder/stats", "params": "all"}, '"params" must be'),
    ],
    ids=["array", "number", "string", "null", "no-method", "bool-id", "number-method", "string-params"],
)
def test_json_that_is_no_message_gets_invalid_request_and_a_log_line(server, mark, body, problem):
    before = len(null_id_errors(server))
    server.connection.send(body)
    line = server.wait_for_log("bad message from the client", after=mark)
    assert problem in line
    still_serving(server, mark)
    errors = null_id_errors(server)[before:]
    if isinstance(body, dict) and isinstance(body.get("id"), str):  # string ids: the client's own are numbers
        assert server.connection.response(body["id"])["error"]["code"] == INVALID_REQUEST
        assert errors == []
    else:
        assert [error["code"] for error in errors] == [INVALID_REQUEST]


def test_a_request_without_the_jsonrpc_member_is_answered_with_its_id(server, mark):
    server.connection.send({"id": "no-version", "method": "santacoder/stats"})
    error = server.connection.response("no-version")["error"]
    assert error["code"] == INVALID_REQUEST and "jsonrpc" in error["message"]
    server.wait_for_log('no "jsonrpc": "2.0"', after=mark)
    still_serving(server, mark)


# -- framing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "logged"),
    [
        (b"Content-Length: abc\r\n\r\n", "is no byte count"),
        (b"Content-Length: -5\r\n\r\n", "is no byte count"),
        (b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n", "without a valid Content-Length"),
        (b"Hello there\r\n\r\n", "no message header"),
    ],
    ids=["not-a-number", "negative", "missing", "not-a-header"],
)
def test_a_header_without_a_valid_content_length_costs_only_its_own_message(server, mark, header, logged):
    lost = json.dumps({"jsonrpc": "2.0", "id": "lost", "method": "santacoder/stats"}).encode()
    next_one = frame(json.dumps({"jsonrpc": "2.0", "id": "next", "method": "santacoder/stats"}))
    server.connection.send_bytes(header + lost + next_one)  # one write: the next message follows at once
    assert "result" in server.connection.response("next")
    server.wait_for_log(logged, after=mark)
    server.wait_for_log("skipped", after=mark)
    still_serving(server, mark)


def test_a_content_length_shorter_than_the_body_costs_only_that_message(server, mark):
    body = json.dumps({"jsonrpc": "2.0", "id": "cut", "method": "santacoder/stats"}).encode()
    next_one = frame(json.dumps({"jsonrpc": "2.0", "id": "after-cut", "method": "santacoder/stats"}))
    server.connection.send_bytes(b"Content-Length: 10\r\n\r\n" + body + next_one)
    assert "result" in server.connection.response("after-cut")
    assert server.connection.responses("cut") == []  # its id was in the part that was cut off
    server.wait_for_log("not JSON", after=mark)
    still_serving(server, mark)


# -- params of the wrong type -------------------------------------------------------------------

INLINE = "textDocument/inlineCompletion"


def inline_params(position, uri: str = HEALTH_URI) -> dict:
    return {"textDocument": {"uri": uri}, "position": position, "context": {"triggerKind": 2}}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (inline_params("0:4"), "params.position"),
        (inline_params({"line": -1, "character": 4}), "params.position"),
        (inline_params({"line": 0.5, "character": 4}), "params.position.line"),
        (inline_params({"line": 0, "character": "4"}), "params.position.character"),
        ({"position": {"line": 0, "character": 4}, "context": {"triggerKind": 2}}, "params.textDocument"),
        (None, "params"),
        ([HEALTH_URI, 0, 4], "params"),
    ],
    ids=["position-string", "line-negative", "line-float", "character-string", "no-text-document", "no-params", "params-array"],
)
def test_a_request_with_params_of_the_wrong_type_gets_invalid_params(server, mark, params, field):
    msg_id = server.connection.send_request(INLINE, params)
    error = server.connection.response(msg_id)["error"]
    assert error["code"] == INVALID_PARAMS and f"at {field}" in error["message"], error
    line = server.wait_for_log("invalid params for textDocument/inlineCompletion", after=mark)
    assert field in line
    still_serving(server, mark)


def test_a_did_open_whose_text_is_not_a_string_is_logged_and_ignored(server, mark):
    for text in (5, None, ["x = "]):
        uri = f"file:///w/not-text-{type(text).__name__}.py"
        server.connection.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}})
        assert document_state(server, uri) is None  # not opened with text "5" or "None"
    line = server.wait_for_log("invalid params for textDocument/didOpen", after=mark)
    assert "params.textDocument.text" in line
    assert server.connection.notifications("window/showMessage") == []  # the client's bug, not the user's
    still_serving(server, mark)


def test_a_did_change_with_a_range_past_the_end_is_clamped_to_the_end(server, mark):
    uri = "file:///w/clamped.py"
    server.connection.open(uri, "x = \n")
    change = {"range": {"start": {"line": 50, "character": 0}, "end": {"line": 60, "character": 3}}, "text": "y = 1"}
    server.connection.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]})
    change = {"range": {"start": {"line": 0, "character": 99}, "end": {"line": 0, "character": 120}}, "text": "0"}
    server.connection.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [change]})
    state = document_state(server, uri)
    assert (state["version"], state["sha256"]) == (3, sha256("x = 0\ny = 1"))
    still_serving(server, mark)


# -- unknown methods ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["santacoder/noSuchThing", "textDocument/hover", "$/noSuchThing"])
def test_an_unknown_request_gets_method_not_found(server, mark, method):
    msg_id = server.connection.send_request(method, {})
    error = server.connection.response(msg_id)["error"]
    assert error["code"] == METHOD_NOT_FOUND and method in error["message"]
    server.wait_for_log(f"unknown method {method!r}", after=mark)
    still_serving(server, mark)


def test_unknown_notifications_are_ignored_and_dollar_ones_quietly(server, mark):
    server.connection.notify("santacoder/noSuchNotification", {"x": 1})
    server.connection.notify("$/noSuchNotification", {"x": 1})
    server.connection.notify("$/setTrace", {"value": "off"})  # a known $/ one still works
    server.wait_for_log("'santacoder/noSuchNotification'", after=mark)
    still_serving(server, mark)
    assert "$/noSuchNotification" not in server.stderr[mark:]


# -- documents that are not open, positions that are not in them --------------------------------


def test_requests_for_a_document_never_opened_get_an_empty_answer(server, mark):
    uri = "file:///w/never-opened.py"
    answer = server.connection.request(INLINE, inline_params({"line": 0, "character": 0}, uri))
    assert answer["result"]["items"] == []
    completion = {"textDocument": {"uri": uri}, "position": {"line": 3, "character": 1}}
    assert server.connection.request("textDocument/completion", completion)["result"]["items"] == []
    assert document_state(server, uri) is None
    line = server.wait_for_log(uri, after=mark)
    assert "not open" in line
    still_serving(server, mark)


@pytest.mark.parametrize(
    ("position", "items"),
    [
        ({"line": 0, "character": 400}, [("42", 0, 4)]),  # clamped to the end of the line
        ({"line": 40, "character": 4}, []),  # past the last line: the end of the document
        ({"line": 2**31 - 1, "character": 2**31 - 1}, []),
    ],
    ids=["past-end-of-line", "past-last-line", "largest-position"],
)
def test_a_position_past_the_end_is_clamped(server, mark, position, items):
    uri = "file:///w/short.py"
    server.connection.open(uri, "x = \n")
    answer = server.connection.request(INLINE, inline_params(position, uri))
    got = [(item["insertText"], item["range"]["start"]["line"], item["range"]["start"]["character"]) for item in answer["result"]["items"]]
    assert got == items
    still_serving(server, mark)


def test_a_did_change_for_a_document_never_opened_is_logged_and_ignored(server, mark):
    uri = "file:///w/changed-not-opened.py"
    change = {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "x"}
    server.connection.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change, {"text": "whole"}]})
    assert document_state(server, uri) is None
    line = server.wait_for_log(f"didChange for {uri}", after=mark)
    assert "not open" in line
    still_serving(server, mark)


def test_a_second_did_open_replaces_the_document_and_is_logged(server, mark):
    uri = "file:///w/opened-twice.py"
    server.connection.open(uri, "x = \n", version=1)
    server.connection.open(uri, "y = 2\n", version=7)
    state = document_state(server, uri)
    assert (state["version"], state["sha256"]) == (7, sha256("y = 2\n"))
    line = server.wait_for_log(f"didOpen for {uri}", after=mark)
    assert "already open" in line
    still_serving(server, mark)


def test_a_did_close_of_an_unknown_document_is_logged_and_ignored(server, mark):
    uri = "file:///w/closed-not-opened.py"
    server.connection.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    server.connection.notify("textDocument/didClose", {"textDocument": {"uri": HEALTH_URI + "x"}})
    line = server.wait_for_log(f"didClose for {uri}", after=mark)
    assert "not open" in line
    still_serving(server, mark)


# -- requests the lifecycle does not allow --------------------------------------------------------


def test_requests_before_initialize_and_after_shutdown_get_errors():
    with ServerProcess() as process:
        connection = process.connection
        error = connection.request("santacoder/stats")["error"]
        assert error["code"] == NOT_INITIALIZED
        connection.initialize({"model": fake_model(rules=RULES)})
        assert connection.request("shutdown") == {"jsonrpc": "2.0", "id": connection.sent_ids[-1], "result": None}
        error = connection.request("santacoder/stats")["error"]
        assert error["code"] == INVALID_REQUEST and "after shutdown" in error["message"]
        connection.notify("exit")
        assert process.wait() == 0
        assert connection.unanswered(timeout_s=0) == []
        assert "before initialize" in process.stderr and "Traceback" not in process.stderr
