"""Frames that promise more than they send, or more than a message may be: the frame is
dropped with a log line, and the messages after it are served."""

from __future__ import annotations

import json
import time

import pytest

from tests.protocol.harness import fake_model
from tests.reliability.rawclient import ServerProcess, frame

RULES = [{"after": "x = ", "text": "42"}]
HEALTH_URI = "file:///w/health.py"


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--frame-timeout-s", "1", "--max-message-mb", "1") as process:
        process.connection.initialize({"model": fake_model(rules=RULES)})
        process.connection.open(HEALTH_URI, "x = \n")
        yield process


def still_serving(server: ServerProcess, mark: int) -> None:
    assert server.alive(), server.stderr[mark:]
    answer = server.connection.inline(HEALTH_URI, 0, 4)
    assert [item["insertText"] for item in answer["result"]["items"]] == ["42"]
    assert "Traceback" not in server.stderr[mark:]


def test_a_header_that_promises_more_than_it_sends_is_dropped_after_the_frame_timeout(server):
    mark = len(server.stderr)
    started = time.monotonic()
    server.connection.send_bytes(b"Content-Length: 500000\r\n\r\n" + b'{"jsonrpc": "2.0", "method": "textDocument/didOpen"')
    line = server.wait_for_log("did not arrive within 1 s", timeout_s=10, after=mark)
    assert "(51 of 500000 bytes came" in line
    assert time.monotonic() - started < 5
    still_serving(server, mark)


def test_a_message_over_the_size_limit_is_read_dropped_and_the_next_one_served(server):
    mark = len(server.stderr)
    big = json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///w/big.py", "languageId": "python", "version": 1, "text": "y = 1\n" * 400_000}}})  # fmt: skip
    server.connection.send_bytes(frame(big))  # 2.4 MB, the limit is 1 MiB
    line = server.wait_for_log("dropping a message of", after=mark)
    assert "over the limit of 1048576" in line
    still_serving(server, mark)
    assert server.connection.request("santacoder/documentState", {"uri": "file:///w/big.py"})["result"] is None


def test_a_huge_content_length_and_silence_does_not_block_later_messages(server):
    mark = len(server.stderr)
    server.connection.send_bytes(b"Content-Length: 100000000\r\n\r\n")  # and then nothing
    server.wait_for_log("dropping a message of 100000000 bytes", after=mark)
    server.wait_for_log("did not arrive within 1 s", timeout_s=10, after=mark)
    still_serving(server, mark)
