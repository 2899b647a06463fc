"""Safety by default: a model directory's own Python code is not run unless trust_remote_code
is on, and TCP mode listens on loopback only unless told otherwise (and then warns)."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from model_runtime.loader import BUNDLED_DIR
from tests.protocol.harness import server_env
from tests.reliability.rawclient import ServerProcess, connect_tcp, free_port, tcp_listeners

MODEL_LOAD_TIMEOUT_S = 60.0  # imports torch and transformers in the loading thread


@pytest.fixture()
def custom_code_model(tmp_path) -> tuple[Path, Path]:
    """A model directory whose config.json names its own modelling code (``auto_map``) for a
    model type transformers does not know; importing that code writes the marker file. The
    tokenizer is the bundled one, so nothing but the custom code can stop the load early."""
    model = tmp_path / "custom-code-model"
    marker = tmp_path / "custom-code-ran"
    model.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(BUNDLED_DIR / "tiny" / name, model / name)
    config = {
        "model_type": "santacoder_custom_marker",
        "architectures": ["MarkerForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_marker.MarkerConfig", "AutoModelForCausalLM": "modeling_marker.MarkerForCausalLM"},
    }
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text(__name__)\n"
    config_class = "from transformers import PretrainedConfig\n\nclass MarkerConfig(PretrainedConfig):\n    model_type = 'santacoder_custom_marker'\n"
    (model / "configuration_marker.py").write_text(payload + config_class, encoding="utf-8")
    (model / "modeling_marker.py").write_text(payload, encoding="utf-8")
    return model, marker


def load_through_the_server(model: Path, tmp_path: Path) -> tuple[dict, ServerProcess]:
    """A server that was asked to load ``model`` with default settings, and the load's outcome."""
    env = server_env()
    env["HF_MODULES_CACHE"] = str(tmp_path / "hf-modules")  # where transformers copies trusted code to
    env["HF_HUB_OFFLINE"] = "1"
    server = ServerProcess(env=env)
    try:
        server.connection.initialize({"model": str(model), "device": "cpu"}, wait_ready=False)
        state = server.connection.wait_for_model(("ready", "failed"), timeout_s=MODEL_LOAD_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise
    return state["model"], server


def test_a_models_own_code_runs_only_once_trust_remote_code_is_turned_on(custom_code_model, tmp_path):
    model, marker = custom_code_model
    state, server = load_through_the_server(model, tmp_path)
    with server:
        assert state["state"] == "failed"
        message = state["error"]
        assert "trust_remote_code" in message and "\n" not in message
        assert "modeling_marker.py" in message  # says which code it would have had to run
        [shown] = [m["params"]["message"] for m in server.connection.notifications("window/showMessage")]
        assert message in shown
        assert not marker.exists()

        settings = {"santacoder": {"model": str(model), "device": "cpu", "trustRemoteCode": True}}
        server.connection.notify("workspace/didChangeConfiguration", {"settings": settings})
        deadline = time.monotonic() + MODEL_LOAD_TIMEOUT_S
        while not marker.exists():  # the load itself fails afterwards: the marker code defines no model
            assert time.monotonic() < deadline, server.stderr
            time.sleep(0.05)


def test_tcp_listens_on_loopback_only_by_default():
    port = free_port()
    with ServerProcess("--tcp", "--port", str(port), stdio=False) as server:
        line = server.wait_for_log("listening on")
        assert f"listening on 127.0.0.1:{port} (loopback only)" in line
        assert tcp_listeners(port) == [f"127.0.0.1:{port}"]
        sock, connection = connect_tcp(port)
        with sock:
            assert connection.initialize(wait_ready=False)["serverInfo"]["name"] == "santacoder-lsp"
            assert connection.request("shutdown")["result"] is None
            connection.notify("exit")
            server.wait_for_log("listening for the next client")  # TCP: a session ends, the server does not
        server.process.terminate()
        assert server.wait() == 0
        assert "WARNING" not in server.stderr and "Traceback" not in server.stderr


def test_tcp_on_all_interfaces_warns_loudly():
    port = free_port()
    with ServerProcess("--tcp", "--host", "0.0.0.0", "--port", str(port), stdio=False) as server:
        line = server.wait_for_log("listening on")
        assert "WARNING" in line and f"0.0.0.0:{port}" in line and "NOT loopback only" in line
        assert "any machine that can reach this one" in line
        assert tcp_listeners(port) == [f"0.0.0.0:{port}"]
        sock, connection = connect_tcp(port)
        with sock:
            connection.initialize(wait_ready=False)
            connection.close()
            server.wait_for_log("listening for the next client")
        server.process.terminate()
        assert server.wait() == 0


def test_tcp_on_a_port_in_use_fails_with_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with ServerProcess("--tcp", "--port", str(port), stdio=False) as server:
            assert server.wait() == 1
            assert f"cannot listen on 127.0.0.1:{port}" in server.stderr and "Traceback" not in server.stderr
