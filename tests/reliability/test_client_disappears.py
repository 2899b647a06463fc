"""A client that goes away: the server must exit promptly, with the right exit code and no
traceback, however it goes (end of input with no shutdown, mid-decode, mid-load, a client that
stops reading, ``shutdown`` + ``exit``, ``exit`` alone) and over stdio as over TCP."""

from __future__ import annotations

import json
import time

import pytest

from tests.protocol.harness import fake_model
from tests.reliability.rawclient import ServerProcess, connect_tcp, frame, free_port

EXIT_WITHIN_S = 5.0
RULES = [{"after": "x = ", "text": "42"}]
# 48+ tokens at 250 ms each: a decode that was not cancelled would hold the exit up for 12 s
SLOW_DECODE = fake_model(default="a b c d e f g h i j k l m n o p q r s t u v w x y z " * 4, tokenDelayMs=250)


def exits_cleanly(server: ServerProcess, code: int = 0) -> float:
    """Seconds until the server exited with ``code`` and a clean log (no traceback)."""
    started = time.monotonic()
    assert server.wait(EXIT_WITHIN_S) == code, server.stderr
    elapsed = time.monotonic() - started
    assert "Traceback" not in server.stderr, server.stderr
    assert "Exception" not in server.stderr, server.stderr
    return elapsed


def test_end_of_input_without_shutdown_exits_with_0():
    with ServerProcess() as server:
        server.connection.initialize({"model": fake_model(rules=RULES)})
        server.connection.close()
        exits_cleanly(server)
        assert "closed the connection without shutdown and exit" in server.stderr


def test_end_of_input_while_a_completion_is_decoding_cancels_it_and_exits():
    with ServerProcess() as server:
        connection = server.connection
        connection.initialize({"model": SLOW_DECODE})
        connection.open("file:///w/a.py", "x = \n")
        params = {"textDocument": {"uri": "file:///w/a.py"}, "position": {"line": 0, "character": 4}, "context": {"triggerKind": 1}}
        connection.send_request("textDocument/inlineCompletion", params)
        deadline = time.monotonic() + 5
        while connection.stats()["modelCalls"] == 0:  # the decode thread has started
            assert time.monotonic() < deadline, "the decode never started"
            time.sleep(0.02)
        connection.close()
        assert exits_cleanly(server) < 3.0


def test_end_of_input_while_the_model_is_loading_exits():
    with ServerProcess() as server:
        server.connection.initialize({"model": fake_model(loadDelayMs=60_000)}, wait_ready=False)
        server.connection.wait_for_model(("loading",))
        server.connection.close()
        exits_cleanly(server)


def test_a_client_that_stops_reading_does_not_cause_a_traceback():
    with ServerProcess(read=False) as server:
        server.process.stdout.close()  # the client died: every write now fails with EPIPE
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}}
        server.process.stdin.write(frame(json.dumps(initialize)))
        server.process.stdin.flush()
        server.wait_for_log("the client has gone")
        server.process.stdin.close()
        exits_cleanly(server)


def test_shutdown_then_exit_exits_with_0():
    with ServerProcess() as server:
        connection = server.connection
        connection.initialize({"model": fake_model(rules=RULES)})
        assert connection.request("shutdown")["result"] is None
        connection.notify("exit")
        exits_cleanly(server, 0)


def test_exit_without_shutdown_exits_with_1():
    with ServerProcess() as server:
        server.connection.initialize({"model": fake_model(rules=RULES)})
        server.connection.notify("exit")
        exits_cleanly(server, 1)  # as LSP asks
        assert "exit without shutdown" in server.stderr


@pytest.mark.parametrize("ending", ["shutdown-exit", "exit", "disconnect"])
def test_a_tcp_client_that_leaves_ends_its_session_without_a_traceback_and_the_server_listens_on(ending):
    port = free_port()
    with ServerProcess("--tcp", "--port", str(port), stdio=False) as server:
        sock, connection = connect_tcp(port)
        try:
            connection.initialize({"model": fake_model(rules=RULES)})
            if ending == "shutdown-exit":
                assert connection.request("shutdown")["result"] is None
            if ending == "disconnect":
                connection.close()
            else:
                connection.notify("exit")
            server.wait_for_log(f"ended (exit code {1 if ending == 'exit' else 0}); listening for the next client")
        finally:
            sock.close()
        assert server.alive()
        sock, connection = connect_tcp(port)  # an editor that restarts its client reconnects
        try:
            connection.initialize({"model": fake_model(rules=RULES)})
            connection.open("file:///w/a.py", "x = \n")
            assert [item["insertText"] for item in connection.inline("file:///w/a.py", 0, 4)["result"]["items"]] == ["42"]
        finally:
            sock.close()
        server.process.terminate()
        exits_cleanly(server, 0)
