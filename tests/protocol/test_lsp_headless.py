"""The headless command: ``santacoder-lsp complete FILE --line L --character C [--json]``."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.protocol.harness import REPO, fake_model, server_env

DEMO = "import os\r\n\r\ndef total(values):\r\n    \r\n"
RULES = [{"after": "def total(values):\n    ", "text": "return sum(values)\n\ndef other():\n"}]
BUNDLED_TINY = REPO / "model_runtime" / "bundled" / "tiny" / "config.json"


def complete(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsp_server", "complete", *args],
        env=server_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout_s, encoding="utf-8",
    )  # fmt: skip


def test_prints_the_completion_text_exactly(tmp_path):
    path = tmp_path / "demo.py"
    path.write_bytes(DEMO.encode())
    done = complete(str(path), "--line", "3", "--character", "4", "--model", fake_model(rules=RULES))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "return sum(values)"


def test_json_output_has_text_and_stats(tmp_path):
    path = tmp_path / "demo.py"
    path.write_bytes(DEMO.encode())
    done = complete(str(path), "--line", "3", "--character", "4", "--json", "--model", fake_model(rules=RULES))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["text"] == "return sum(values)"
    assert (out["mode"], out["stopReason"], out["model"]["state"]) == ("multi", "callback", "ready")
    assert (out["model"]["quantization"], out["encoding"]) == ("none", "utf-8")
    assert out["stats"]["generated_tokens"] > 0 and out["prefixTokens"] > 0


def test_a_model_that_cannot_load_exits_1_with_one_line(tmp_path):
    path = tmp_path / "demo.py"
    path.write_text("x = 1\n")
    broken = fake_model(loadError="model directory '/nowhere' does not exist: fix the path")
    done = complete(str(path), "--line", "0", "--character", "0", "--model", broken)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == ["santacoder-lsp: model directory '/nowhere' does not exist: fix the path"]


def test_real_runtime_end_to_end(tmp_path, tiny_model_dir, capsys):
    """The real engine through the same entry point, in this process (torch is loaded here
    already; a subprocess would pay for importing it again): the bundled tiny model once it
    exists, else a random test model."""
    from lsp_server.__main__ import main

    model = "tiny" if BUNDLED_TINY.is_file() else str(tiny_model_dir)
    path = tmp_path / "demo.py"
    path.write_text("import os\n\n\ndef list_files(folder):\n    \n    return files\n")
    assert main(["complete", str(path), "--line", "4", "--character", "4", "--json", "--model", model, "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["device"] == "cpu" and out["model"]["state"] == "ready"
    assert out["stats"]["prompt_tokens"] > 0
    assert out["stopReason"] in ("eos", "max_tokens", "callback", "context_full", "low_confidence")


# -- files and positions the command cannot use: one line, a non-zero exit, no usage text ---------

import pytest  # noqa: E402

FILE_ERRORS = {
    "missing": (lambda tmp: tmp / "nope.py", ("0", "0"), "does not exist: check the path"),
    "directory": (lambda tmp: tmp, ("0", "0"), "is a directory: give a source file"),
    "binary": (lambda tmp: _write(tmp / "a.bin", b"\x7fELF\x00\x01\x02"), ("0", "0"), "looks binary (it has NUL bytes)"),
    "not-text": (lambda tmp: _write(tmp / "a.py", b"x = '\x81\x90\xff'\n"), ("0", "0"), "is not UTF-8 (byte 5 is 0x81) nor Latin-1 text"),
    "unknown-cookie": (lambda tmp: _write(tmp / "a.py", b"# coding: klingon\nx = 1\n"), ("0", "0"), "names 'klingon', which Python does not know"),
    "negative": (lambda tmp: _write(tmp / "a.py", b"x = 1\n"), ("-1", "0"), "are 0-based and cannot be negative"),
    "line-past-end": (lambda tmp: _write(tmp / "a.py", b"x = 1\n"), ("5", "0"), "--line 5 is past the end of"),
    "column-past-end": (lambda tmp: _write(tmp / "a.py", b"x = 1\n"), ("0", "9"), "--character 9 is past the end of line 0"),
}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", FILE_ERRORS, ids=list(FILE_ERRORS))
def test_a_file_or_position_it_cannot_use_is_one_line_and_a_non_zero_exit(tmp_path, case):
    make, (line, character), expected = FILE_ERRORS[case]
    done = complete(str(make(tmp_path)), "--line", line, "--character", character, "--model", fake_model(rules=RULES))
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("santacoder-lsp: ") and expected in lines[0], done.stderr
    assert "usage:" not in done.stderr


@pytest.mark.parametrize(
    "data, encoding",
    [
        ("s = 'café'\r\nx = ".encode("latin-1"), "latin-1"),
        ("# -*- coding: cp1252 -*-\r\ns = '€'\r\nx = ".encode("cp1252"), "cp1252"),
    ],
    ids=["latin-1", "coding-cookie"],
)
def test_latin1_files_and_files_with_a_coding_cookie_are_completed(tmp_path, data, encoding):
    path = _write(tmp_path / "legacy.py", data)
    last = data.decode(encoding).split("\r\n")
    rules = [{"after": "x = ", "text": "42"}]
    done = complete(str(path), "--line", str(len(last) - 1), "--character", "4", "--json", "--model", fake_model(rules=rules))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["text"], out["encoding"]) == ("42", encoding)


# -- extra context: --context-file, the workspace's imports, --extra-context-tokens ---------------

HELPERS = "".join(
    f"def scale_reading_{i}(reading, factor):\n    adjusted = reading * factor\n    clipped = min(adjusted, 100)\n    return clipped\n\n"
    for i in range(4)
)
MAIN = "def report(values):\n    total = scale_reading_1(0, 1)\n    return total + \n"


def recorded(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_context_file_reaches_the_prompt_as_another_open_document(tmp_path):
    (tmp_path / "lib").mkdir()
    helpers = _write(tmp_path / "lib" / "helpers.py", HELPERS.encode())
    main = _write(tmp_path / "main.py", MAIN.encode())
    record = tmp_path / "requests.jsonl"
    done = complete(str(main), "--line", "2", "--character", "19", "--json", "--context-file", str(helpers),
                    "--context-file", str(main), "--model", fake_model(recordPath=str(record)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    [request] = recorded(record)
    assert request["extraContext"].startswith("# lib/helpers.py\ndef scale_reading_")  # relative to FILE's folder
    assert json.loads(done.stdout)["context"]["contextDocuments"] == 2  # FILE given again is FILE, once


def test_the_files_that_file_imports_are_read_inside_the_workspace_only(tmp_path):
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    _write(project / "helpers.py", HELPERS.encode())
    _write(tmp_path / "secret.py", HELPERS.replace("scale_reading", "secret_reading").encode())
    (project / "app" / "leak.py").symlink_to(tmp_path / "secret.py")
    main = _write(project / "app" / "main.py", ("from helpers import scale_reading_1\nfrom . import leak\n" + MAIN).encode())
    record = tmp_path / "requests.jsonl"
    done = complete(str(main), "--line", "4", "--character", "19", "--workspace", str(project), "--model", fake_model(recordPath=str(record)))
    assert done.returncode == 0, done.stderr
    [request] = recorded(record)
    assert request["extraContext"].startswith("# helpers.py\ndef scale_reading_") and "secret" not in request["extraContext"]
    done = complete(str(main), "--line", "4", "--character", "19", "--model", fake_model(recordPath=str(record)))  # root: app/
    assert done.returncode == 0, done.stderr
    assert recorded(record)[-1]["extraContext"] == ""  # helpers.py is outside app/, leak.py leads out of it


def test_extra_context_tokens_zero_turns_it_off_and_a_bad_workspace_is_one_line(tmp_path):
    helpers = _write(tmp_path / "helpers.py", HELPERS.encode())
    main = _write(tmp_path / "main.py", MAIN.encode())
    record = tmp_path / "requests.jsonl"
    done = complete(str(main), "--line", "2", "--character", "19", "--context-file", str(helpers), "--extra-context-tokens", "0",
                    "--model", fake_model(recordPath=str(record)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert recorded(record)[-1]["extraContext"] == ""
    done = complete(str(main), "--line", "2", "--character", "19", "--workspace", str(tmp_path / "nope"), "--model", fake_model())
    assert done.returncode == 1 and done.stderr.strip() == f"santacoder-lsp: --workspace {tmp_path / 'nope'} is not a folder: give the project's folder"
    done = complete(str(main), "--line", "2", "--character", "19", "--context-file", str(tmp_path / "gone.py"), "--model", fake_model())
    assert done.returncode == 1 and "gone.py does not exist: check the path" in done.stderr
