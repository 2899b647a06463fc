"""The settings table (``lsp_server.settings.SPECS``) is the one source of setting names,
defaults, choices and ranges: the extension's manifest, the runtime's ``LoadOptions`` and the
command line must agree with it."""

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from lsp_server.__main__ import _add_model_options, _settings_from_args
from lsp_server.settings import SPECS, Settings, parse_settings
from model_runtime.api import LoadOptions

REPO = Path(__file__).resolve().parents[2]
PROPERTIES = json.loads((REPO / "vscode-extension" / "package.json").read_text(encoding="utf-8"))["contributes"]["configuration"]["properties"]


def _extension_keys(name: str) -> set[str]:
    """A list of setting names declared in the extension's settings.ts (``CLIENT_ONLY_KEYS``:
    settings the server never sees; ``RESTART_KEYS``: those whose change restarts it)."""
    source = (REPO / "vscode-extension" / "src" / "settings.ts").read_text(encoding="utf-8")
    listed = re.search(name + r"[^=]*=\s*\[([^\]]*)\]", source)
    assert listed is not None, f"settings.ts no longer declares {name} as a list"
    return set(re.findall(r"'([^']+)'", listed.group(1)))


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.key)
def test_the_manifest_declares_each_setting_as_the_server_reads_it(spec):
    entry = PROPERTIES.get(f"santacoder.{spec.key}")
    assert entry is not None, f"package.json does not declare santacoder.{spec.key}"
    assert entry["type"] == spec.json_type
    assert entry["default"] == Settings().to_json()[spec.key]
    assert spec.parse(entry["default"]) is not None  # the manifest's default passes the server's check
    assert set(entry.get("enum", ())) == set(spec.choices)
    assert (entry.get("minimum"), entry.get("maximum")) == (spec.minimum, spec.maximum)


def test_the_manifest_declares_nothing_else_but_the_clients_own_settings():
    declared = {name.removeprefix("santacoder.") for name in PROPERTIES}
    assert declared - {spec.key for spec in SPECS} == _extension_keys("CLIENT_ONLY_KEYS")


def test_the_default_settings_load_the_runtimes_default_options():
    assert Settings().load_options() == LoadOptions()


def test_every_load_option_the_settings_set_follows_its_setting():
    """A non-default value of each setting that reaches LoadOptions changes it (no setting is
    dropped on the way to the runtime)."""
    changed = {
        "model": "/models/x", "device": "cpu", "dtype": "bf16", "quantization": "nf4", "trustRemoteCode": True, "kvCacheMb": 1,
        "backend": "openai", "serverUrl": "http://h:1", "serverModel": "m", "apiKeyEnv": "K",
        "requestTimeoutMs": 123, "connectTimeoutMs": 456,
    }  # fmt: skip
    base = Settings().load_options()
    for key, value in changed.items():
        settings, problems = parse_settings({key: value})
        assert problems == [] and settings.load_options() != base, key
    set_by_settings = {f.name for f in fields(LoadOptions)} - {"fim_tokens", "threads", "static_decode", "fast_decode", "draft_tokens", "lookup_tokens"}
    set_by_settings -= {"fim_order"}  # per request, below
    assert {name for name in set_by_settings if getattr(parse_settings(changed)[0].load_options(), name) == getattr(base, name)} == set()


def test_the_fim_order_travels_per_request_and_costs_no_reload():
    settings, problems = parse_settings({"fimOrder": "psm"})
    assert problems == [] and settings.fim_order == "psm"
    assert settings.load_options() == Settings().load_options()


def test_command_line_options_are_the_settings_with_a_flag():
    import argparse

    parser = argparse.ArgumentParser()
    _add_model_options(parser)
    flagged = [spec for spec in SPECS if spec.flag_help is not None]
    assert {spec.attr for spec in flagged} <= set(vars(parser.parse_args([])))
    args = parser.parse_args(["--fim-order", "psm", "--max-new-tokens", "7", "--prefix-ratio", "0.5", "--trust-remote-code"])
    settings = _settings_from_args(parser, args)
    assert (settings.fim_order, settings.max_new_tokens, settings.prefix_ratio, settings.trust_remote_code) == ("psm", 7, 0.5, True)
    assert _settings_from_args(parser, parser.parse_args([])) == Settings()
    with pytest.raises(SystemExit):
        parser.parse_args(["--fim-order", "mps"])
    with pytest.raises(SystemExit):  # the range comes from the same table as the editor's setting
        _settings_from_args(parser, parser.parse_args(["--max-new-tokens", "0"]))


def test_the_extension_restarts_the_server_for_exactly_the_settings_that_reload_the_model():
    """settings.ts's RESTART_KEYS against ``Settings.load_options``: a restart for each setting
    that changes how the model loads; none for the FIM order (per request) or the remote
    backend's connection settings (the engine reconnects), which are in LoadOptions too."""
    reconnect_or_per_request = {"fimOrder", "serverUrl", "serverModel", "apiKeyEnv", "requestTimeoutMs", "connectTimeoutMs"}
    samples = {"string": "x", "integer": 1, "number": 0.5, "boolean": True, "object": False}
    reloading = set()
    for spec in SPECS:
        value = spec.choices[-1] if spec.choices and spec.choices[-1] != Settings().to_json()[spec.key] else (spec.choices[0] if spec.choices else samples[spec.json_type])
        value = {"serverUrl": "http://h:1", "apiKeyEnv": "K", "requestTimeoutMs": 100, "connectTimeoutMs": 100}.get(spec.key, value)
        settings, problems = parse_settings({spec.key: value})
        assert problems == [], (spec.key, problems)
        if settings.load_options() != Settings().load_options():
            reloading.add(spec.key)
    assert _extension_keys("RESTART_KEYS") == reloading - reconnect_or_per_request
