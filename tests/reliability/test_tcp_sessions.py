"""TCP mode: each connection is a fresh session, a client that comes while another is served
gets a JSON-RPC error before it is closed, and a bad --port is one clear line."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.protocol.harness import REPO, fake_model, server_env
from tests.reliability.rawclient import ServerProcess, connect_tcp, free_port

RULES = [{"after": "x = ", "text": "42"}]
REQUEST_FAILED = -32803


def test_each_connection_is_a_fresh_session():
    port = free_port()
    with ServerProcess("--tcp", "--port", str(port), stdio=False) as server:
        sock, first = connect_tcp(port)
        first.initialize({"model": fake_model(rules=RULES), "maxNewTokens": 7})
        first.open("file:///w/a.py", "x = \n")
        assert first.stats()["settings"]["maxNewTokens"] == 7
        first.close()
        sock.close()
        server.wait_for_log("listening for the next client")
        sock, second = connect_tcp(port)
        try:
            second.initialize({"model": fake_model(rules=RULES)})
            assert second.request("santacoder/documentState", {"uri": "file:///w/a.py"})["result"] is None  # not open here
            current = second.stats()
            assert current["settings"]["maxNewTokens"] == 64 and current["requests"] == 0  # defaults, fresh counters
            assert current["model"]["quantization"] == "none"  # santacoder/stats names the quantization
        finally:
            sock.close()
        assert "Traceback" not in server.stderr


def test_a_second_concurrent_client_gets_a_json_rpc_error_and_the_first_is_still_served():
    port = free_port()
    with ServerProcess("--tcp", "--port", str(port), stdio=False) as server:
        sock, first = connect_tcp(port)
        other_sock, other = connect_tcp(port)
        try:
            first.initialize({"model": fake_model(rules=RULES)})
            msg_id = other.send_request("initialize", {"processId": None, "capabilities": {}})
            refused = other.response(msg_id)
            assert refused["error"]["code"] == REQUEST_FAILED
            assert "already serves a client" in refused["error"]["message"] and "--port" in refused["error"]["message"]
            deadline = time.monotonic() + 5
            while not other.closed:  # and then it is closed
                assert time.monotonic() < deadline, "the refused connection was left open"
                time.sleep(0.02)
            first.open("file:///w/a.py", "x = \n")
            assert [item["insertText"] for item in first.inline("file:///w/a.py", 0, 4)["result"]["items"]] == ["42"]
        finally:
            sock.close()
            other_sock.close()
        assert "refused a client from" in server.stderr and "Traceback" not in server.stderr


def test_a_port_out_of_range_is_one_clear_line_and_a_non_zero_exit():
    done = subprocess.run(
        [sys.executable, "-m", "lsp_server", "--tcp", "--port", "99999"],
        env=server_env(), cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["santacoder-lsp: --port must be from 0 to 65535, got 99999"]
    assert done.stdout == ""
