"""Settings: typed values, defaults, bad values reported and replaced."""

from __future__ import annotations

from lsp_server.settings import Settings, parse_settings, problems_message


def test_defaults():
    settings = Settings()
    assert (settings.model, settings.device, settings.dtype, settings.quantization) == ("tiny", "auto", "auto", "none")
    assert (settings.fim_order, settings.max_new_tokens, settings.prefix_ratio) == ("spm", 64, 0.75)
    assert settings.language_enabled("python") and settings.language_enabled("anything")


def test_nested_or_flat_payloads_and_partial_updates():
    flat, problems = parse_settings({"model": "/models/sc", "maxNewTokens": 32, "debounceMs": 10})
    assert problems == []
    nested, _ = parse_settings({"santacoder": {"fimOrder": "PSM"}}, flat)
    assert (nested.model, nested.max_new_tokens, nested.fim_order) == ("/models/sc", 32, "psm")


def test_bad_values_are_reported_and_replaced():
    settings, problems = parse_settings(
        {"maxNewTokens": "lots", "device": "tpu", "prefixRatio": 2, "debounceMs": True, "mystery": 1, "trace": {"server": "off"}}
    )
    assert settings == Settings()
    assert len(problems) == 5  # "trace" belongs to the editor client and is ignored
    assert any("'maxNewTokens' must be a whole number from 1 to 1024, got 'lots': using 64" in p for p in problems)
    assert any("'device' must be one of" in p and "'tpu'" in p for p in problems)
    assert any("unknown setting 'mystery'" in p for p in problems)


def test_language_enablement_forms():
    as_map, _ = parse_settings({"enable": {"*": True, "markdown": False}})
    assert as_map.language_enabled("python") and not as_map.language_enabled("markdown")
    as_list, _ = parse_settings({"enable": ["python", "rust"]})
    assert as_list.language_enabled("rust") and not as_list.language_enabled("go")
    off, _ = parse_settings({"enable": False})
    assert not off.language_enabled("python")
    assert as_map.to_json()["enable"] == {"*": True, "markdown": False}


def test_only_load_settings_trigger_a_reload():
    base = Settings()
    assert parse_settings({"debounceMs": 5, "fimOrder": "psm"}, base)[0].load_options().model == base.load_options().model
    assert parse_settings({"dtype": "bf16"}, base)[0].load_options() != base.load_options()


def test_unknown_keys_are_one_problem_and_a_payload_one_message():
    _, problems = parse_settings({"a": 1, "b": 2, "maxNewTokens": 0, "c": 3})
    assert len(problems) == 2
    assert problems[0].startswith("unknown settings 'a', 'b', 'c' ignored: known settings are model, ")
    message = problems_message(problems)
    assert message.startswith("2 settings problems: setting ") and "unknown settings 'a', 'b', 'c'" in message and "'maxNewTokens' must be" in message
    assert problems_message(problems[:1]) == problems[0] and problems_message([]) is None


def test_a_section_that_is_not_an_object_is_refused_with_the_shape_expected():
    base = Settings(max_new_tokens=16)
    for value, kind in (("tiny", "a string"), ([1], "an array"), (3, "a number")):
        settings, problems = parse_settings({"santacoder": value}, base)
        assert settings == base
        assert len(problems) == 1 and '"santacoder" settings must be an object such as' in problems[0] and kind in problems[0]
    assert parse_settings({"santacoder": None, "maxNewTokens": 8}, base)[0].max_new_tokens == 8  # null: flat settings


def test_extra_context_tokens_parses():
    """(Its agreement with package.json is test_lsp_settings_sources', as for every setting.)"""
    settings, problems = parse_settings({"extraContextTokens": 0})
    assert settings.extra_context_tokens == 0 and not problems
    settings, problems = parse_settings({"extraContextTokens": -1})
    assert settings.extra_context_tokens == Settings().extra_context_tokens and len(problems) == 1


def test_backend_settings_reach_the_load_options():
    settings, problems = parse_settings(
        {"backend": "openai", "serverUrl": "https://models.example:8443/v1", "serverModel": "santacoder", "apiKeyEnv": "TEAM_KEY",
         "requestTimeoutMs": 2500, "connectTimeoutMs": 500}
    )  # fmt: skip
    assert problems == []
    options = settings.load_options()
    assert (options.backend, options.server_url, options.server_model, options.api_key_env) == ("openai", "https://models.example:8443/v1", "santacoder", "TEAM_KEY")
    assert (options.request_timeout_ms, options.connect_timeout_ms) == (2500, 500)
    assert options != Settings().load_options()  # a change of backend reloads the engine
    assert Settings().backend == "inprocess" and settings.to_json()["serverUrl"] == "https://models.example:8443/v1"


def test_bad_backend_settings_say_what_to_do_and_never_echo_a_key():
    settings, problems = parse_settings(
        {"backend": "cloud", "serverUrl": "localhost:8000", "apiKeyEnv": "sk-abc123-secret", "requestTimeoutMs": 5}
    )
    assert settings == Settings() and len(problems) == 4
    assert any("'serverUrl' must be an http:// or https:// URL" in p for p in problems)
    assert any("'apiKeyEnv' must be the name of an environment variable" in p for p in problems)
    assert not any("sk-abc123-secret" in p for p in problems)
    assert parse_settings({"serverUrl": "http://user:pw@host:8000"})[1], "credentials in the URL are refused"
    assert parse_settings({"serverModel": "", "apiKeyEnv": ""})[1] == []  # empty: not set
