"""A client that breaks the protocol's ordering rules: a second ``initialize``, a ``didChange``
whose version is older than the document's. The server refuses or logs what is wrong and keeps
its state what the client meant (the first negotiation; the client's text)."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.protocol.harness import REPO, fake_model
from tests.reliability.rawclient import ServerProcess

RULES = [{"after": "x = ", "text": "42"}]
INVALID_REQUEST = -32600


@pytest.fixture()
def server():
    with ServerProcess() as process:
        yield process


def initialize(connection, encodings: list[str], options: dict) -> dict:
    capabilities = {"general": {"positionEncodings": encodings}, "textDocument": {"inlineCompletion": {}}, "window": {"workDoneProgress": False}}
    params = {"processId": None, "rootUri": REPO.as_uri(), "capabilities": capabilities, "initializationOptions": options}
    return connection.request("initialize", params)


def test_a_second_initialize_is_refused_and_the_first_encoding_stays(server):
    connection = server.connection
    first = initialize(connection, ["utf-8"], {"model": fake_model(rules=RULES), "debounceMs": 0})
    assert first["result"]["capabilities"]["positionEncoding"] == "utf-8"
    connection.notify("initialized", {})
    connection.wait_for_model()
    again = initialize(connection, ["utf-16"], {"model": fake_model(rules=[{"after": "x = ", "text": "other"}])})
    assert again["error"]["code"] == INVALID_REQUEST, again
    assert "initialize sent again" in again["error"]["message"] and "utf-8" in again["error"]["message"]
    server.wait_for_log("initialize sent again")
    # "é" is 2 UTF-8 units but 1 UTF-16 unit: column 8 is after "x = " only in UTF-8
    connection.open("file:///w/a.py", "é; x = y\n")
    answer = connection.inline("file:///w/a.py", 0, 8)
    assert [item["insertText"] for item in answer["result"]["items"]] == ["42"]
    assert connection.stats()["settings"]["model"] == fake_model(rules=RULES)  # the second one's options were not taken
    assert "Traceback" not in server.stderr


def document_state(connection, uri: str) -> dict:
    return connection.request("santacoder/documentState", {"uri": uri})["result"]


def change(connection, uri: str, version: int, line: int, character: int, text: str) -> None:
    where = {"line": line, "character": character}
    content_changes = [{"range": {"start": where, "end": where}, "text": text}]
    connection.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": content_changes})


def test_a_did_change_with_an_older_version_is_applied_logged_and_drops_older_answers(server):
    connection = server.connection
    slow = fake_model(rules=RULES, default="a b c d e f g h", tokenDelayMs=200)
    connection.initialize({"model": slow})
    uri = "file:///w/b.py"
    connection.open(uri, "y = \n", version=5)
    pending = connection.send_request(
        "textDocument/inlineCompletion",
        {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 4}, "context": {"triggerKind": 1}},
    )
    deadline = time.monotonic() + 5
    while connection.stats()["modelCalls"] == 0:  # the decode for version 5 is running
        assert time.monotonic() < deadline, "the decode never started"
        time.sleep(0.02)
    change(connection, uri, 3, 0, 0, "x = 1\n")  # older than 5: a client bug
    server.wait_for_log("has version 3, not newer than 5")
    assert connection.response(pending)["result"]["items"] == []  # computed for the text before: never shown
    expected = "x = 1\ny = \n"
    state = document_state(connection, uri)
    assert state["sha256"] == hashlib.sha256(expected.encode()).hexdigest()  # the client's text
    assert state["version"] == 3
    change(connection, uri, 4, 1, 4, "")  # the client goes on from its version 3
    answer = connection.inline(uri, 0, 4)
    assert answer["result"]["items"] == [] or answer["result"]["items"][0]["command"]["arguments"][1] == 4
    assert "Traceback" not in server.stderr
