"""User settings: one typed, frozen value parsed from ``initializationOptions`` and
``workspace/didChangeConfiguration``.

Contract of ``parse_settings``: it never raises. Every bad value is replaced by the value it
would have had (the base), and each problem comes back as one line that says what to do; the
server shows all of one payload's problems as one message (``problems_message``), each
distinct message once. Keys absent from the payload keep their base value, so
a client may send only what it changes.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Literal

from model_runtime.api import BACKENDS, DEVICES, DTYPES, FIM_ORDERS, QUANTIZATIONS, LoadOptions

SECTION = "santacoder"  # settings may come flat or nested under this key
COMPLETION_ITEM_MODES = ("auto", "always", "never")
# Keys a client may send that are not ours to validate (vscode-languageclient's trace switch).
_IGNORED_KEYS = frozenset({"trace"})
# Keys whose bad values are not repeated in messages: a user may paste the key itself there.
_NOT_ECHOED = frozenset({"apiKeyEnv"})


@dataclass(frozen=True)
class Settings:
    model: str = "tiny"  # bundled name, local directory or hub id
    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "none"
    trust_remote_code: bool = False
    kv_cache_mb: int = 256
    fim_order: str = "spm"
    max_new_tokens: int = 64  # multi-line suggestions
    max_new_tokens_single_line: int = 48
    debounce_ms: int = 25  # wait this long before a decode; a newer request cancels the wait
    prefix_ratio: float = 0.75  # share of the prompt budget given to the text before the cursor
    # The confidence gate: a suggestion whose tokens have a geometric-mean probability below
    # this is not shown (0 shows everything). Default chosen with benchmarks/acceptance_replay.py.
    min_confidence: float = 0.0
    # Suggestions end before the first token whose probability is below this (0: never). 0.6 by
    # benchmarks/acceptance_replay.py on the bundled model: of shown suggestions 58% accepted
    # (2.6% with no floor, 34% at 0.45), characters saved 20.7% (11.0%, 21.0%).
    min_token_confidence: float = 0.6
    # Languages: (language id, enabled) pairs plus a default for the rest ("*").
    languages: tuple[tuple[str, bool], ...] = ()
    languages_default: bool = True
    # textDocument/completion items: "auto" answers only clients without inline completion.
    completion_items: str = "auto"
    # Tokens of context from other files before the prompt (at most a quarter of the model's
    # context), taken out of the prefix/suffix budget; 0 turns it off.
    extra_context_tokens: int = 256
    # Backend "openai": the model runs on an OpenAI-compatible server (vLLM); ``model`` then
    # names only the tokenizer, which must be that of the served model.
    backend: str = "inprocess"
    server_url: str = "http://127.0.0.1:8000"
    server_model: str = ""  # "": the model the server serves
    api_key_env: str = ""  # the NAME of an environment variable holding the key, never the key
    request_timeout_ms: int = 10_000
    connect_timeout_ms: int = 2_000

    def language_enabled(self, language_id: str | None) -> bool:
        for name, enabled in self.languages:
            if name == language_id:
                return enabled
        return self.languages_default

    def load_options(self) -> LoadOptions:
        """What the model is loaded with; a change here means a reload. The FIM order is not in it:
        every request carries its own (``CompletionRequest.fim_order``), so switching it costs no reload."""
        return LoadOptions(
            model=self.model,
            device=self.device,
            dtype=self.dtype,
            quantization=self.quantization,
            trust_remote_code=self.trust_remote_code,
            kv_cache_bytes=self.kv_cache_mb * 1024 * 1024,
            backend=self.backend,
            server_url=self.server_url,
            server_model=self.server_model,
            api_key_env=self.api_key_env,
            request_timeout_ms=self.request_timeout_ms,
            connect_timeout_ms=self.connect_timeout_ms,
        )

    def budget_new_tokens(self) -> int:
        """New tokens reserved in the prompt budget: the larger cap, so the window does not
        depend on the mode (switching mode must not move the window and lose the KV cache)."""
        return max(self.max_new_tokens, self.max_new_tokens_single_line)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {spec.key: getattr(self, spec.attr) for spec in SPECS if spec.attr != "languages"}
        enable: dict[str, bool] = {"*": self.languages_default}
        enable.update(dict(self.languages))
        out["enable"] = enable
        return out


# -- value parsers: return the parsed value or raise ValueError("what is expected") -----------


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value.strip()


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError("one of " + ", ".join(repr(o) for o in options))
        return value.lower()

    return parse


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or not low <= value <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return int(value)

    return parse


def _real(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"a number from {low:g} to {high:g}")
        return float(value)

    return parse


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _languages(value: Any) -> tuple[tuple[tuple[str, bool], ...], bool]:
    """``true``/``false``, a list of enabled ids, or a map id -> bool with ``"*"`` as default."""
    if isinstance(value, bool):
        return (), value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple((v, True) for v in value), False
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, bool) for k, v in value.items()):
        default = value.get("*", True)
        return tuple((k, v) for k, v in value.items() if k != "*"), default
    raise ValueError('true/false, a list of language ids, or a map such as {"*": true, "markdown": false}')


def _text(value: Any) -> str:
    """A string that may be empty (meaning "not set")."""
    if not isinstance(value, str):
        raise ValueError("a string")
    return value.strip()


def _server_url(value: Any) -> str:
    parts = urllib.parse.urlsplit(value.strip()) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// URL such as 'http://127.0.0.1:8000'")
    if parts.username or parts.password:
        raise ValueError("a URL without a user name or password (put the key in the variable named by apiKeyEnv)")
    return value.strip()


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or (value.strip() and not _ENV_NAME.match(value.strip())):
        raise ValueError("the name of an environment variable, such as 'SANTACODER_API_KEY' (not the key itself)")
    return value.strip()


JsonType = Literal["string", "integer", "number", "boolean", "object"]


@dataclass(frozen=True)
class SettingSpec:
    """One setting, the single source of what is said about it: its JSON name, its
    ``Settings`` field (whose default is the default everywhere), how a value is checked, and
    what the editor's manifest and the command line show. ``vscode-extension/package.json``
    must agree (type, default, enum, minimum/maximum): a unit test compares them."""

    key: str  # JSON name (camelCase, as in the editor's settings)
    attr: str
    parse: Callable[[Any], Any] = field(repr=False)
    json_type: JsonType
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    flag_help: str | None = None  # a command-line option ``--attr-with-dashes`` with this help; None: none

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


def _one_of(key: str, attr: str, options: tuple[str, ...], flag_help: str | None = None) -> SettingSpec:
    return SettingSpec(key, attr, _choice(options), "string", choices=options, flag_help=flag_help)


def _whole(key: str, attr: str, low: int, high: int, flag_help: str | None = None) -> SettingSpec:
    return SettingSpec(key, attr, _integer(low, high), "integer", minimum=low, maximum=high, flag_help=flag_help)


def _fraction(key: str, attr: str, low: float, high: float, flag_help: str | None = None) -> SettingSpec:
    return SettingSpec(key, attr, _real(low, high), "number", minimum=low, maximum=high, flag_help=flag_help)


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("model", "model", _string, "string", flag_help="bundled name ('tiny'), a model directory or a hub id"),
    _one_of("device", "device", DEVICES, flag_help=""),
    _one_of("dtype", "dtype", DTYPES, flag_help=""),
    _one_of("quantization", "quantization", QUANTIZATIONS, flag_help=""),
    SettingSpec("trustRemoteCode", "trust_remote_code", _boolean, "boolean", flag_help=""),
    _whole("kvCacheMb", "kv_cache_mb", 0, 1 << 20),
    _one_of("fimOrder", "fim_order", FIM_ORDERS, flag_help=""),
    _whole("maxNewTokens", "max_new_tokens", 1, 1024, flag_help="multi-line suggestions"),
    _whole("maxNewTokensSingleLine", "max_new_tokens_single_line", 1, 1024, flag_help=""),
    _whole("debounceMs", "debounce_ms", 0, 5000, flag_help=""),
    _fraction("prefixRatio", "prefix_ratio", 0.05, 0.95, flag_help=""),
    _fraction("minConfidence", "min_confidence", 0.0, 1.0, flag_help="hide suggestions whose geometric-mean token probability is below this; 0: show all"),
    _fraction("minTokenConfidence", "min_token_confidence", 0.0, 1.0, flag_help="end a suggestion before its first token less likely than this; 0: never"),
    SettingSpec("enable", "languages", _languages, "object"),
    _one_of("completionItems", "completion_items", COMPLETION_ITEM_MODES),
    _whole("extraContextTokens", "extra_context_tokens", 0, 1 << 16, flag_help="tokens of other files' chunks before the prompt; 0: none"),
    _one_of("backend", "backend", BACKENDS, flag_help="openai: the model runs on an OpenAI-compatible server (vLLM) at --server-url"),
    SettingSpec("serverUrl", "server_url", _server_url, "string", flag_help="backend openai: the model server"),
    SettingSpec("serverModel", "server_model", _text, "string", flag_help="backend openai: the served model's name (default: what the server serves)"),
    SettingSpec("apiKeyEnv", "api_key_env", _env_name, "string", flag_help="backend openai: NAME of the environment variable holding the API key"),
    _whole("requestTimeoutMs", "request_timeout_ms", 100, 600_000),
    _whole("connectTimeoutMs", "connect_timeout_ms", 100, 60_000),
)
_BY_KEY = {spec.key: spec for spec in SPECS}
assert {spec.attr for spec in SPECS} | {"languages_default"} == {f.name for f in fields(Settings)}


_JSON_NAMES = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "an array", dict: "an object"}
_SHAPE_EXAMPLE = '{"model": "tiny", "maxNewTokens": 64}'


def parse_settings(raw: Any, base: Settings = Settings()) -> tuple[Settings, list[str]]:
    """Return (settings, problems). ``raw`` is the client's JSON: flat, or under ``santacoder``.
    Unknown keys come back as one problem naming them all."""
    if raw is None:
        return base, []
    if isinstance(raw, dict) and SECTION in raw and raw[SECTION] is not None:
        if not isinstance(raw[SECTION], dict):
            got = _JSON_NAMES.get(type(raw[SECTION]), type(raw[SECTION]).__name__)
            return base, [f'"{SECTION}" settings must be an object such as {_SHAPE_EXAMPLE}, got {got} {raw[SECTION]!r}: using the previous values']
        raw = raw[SECTION]
    if not isinstance(raw, dict):
        got = _JSON_NAMES.get(type(raw), type(raw).__name__)
        return base, [f"settings must be an object such as {_SHAPE_EXAMPLE}, got {got}: using the previous values"]
    changes: dict[str, Any] = {}
    problems: list[str] = []
    unknown: list[str] = []
    for key, value in raw.items():
        spec = _BY_KEY.get(key)
        if spec is None:
            if key not in _IGNORED_KEYS and key != SECTION:
                unknown.append(key)
            continue
        if value is None:
            continue  # a client's way of saying "not set"
        try:
            parsed = spec.parse(value)
        except ValueError as expected:
            kept = base.to_json()[spec.key]
            shown = "a value not shown here (it may be a key)" if key in _NOT_ECHOED else repr(value)
            problems.append(f"setting {key!r} must be {expected}, got {shown}: using {kept!r}")
            continue
        if spec.attr == "languages":
            changes["languages"], changes["languages_default"] = parsed
        else:
            changes[spec.attr] = parsed
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        problems.insert(0, f"unknown setting{'s' if len(unknown) > 1 else ''} {names} ignored: known settings are {', '.join(_BY_KEY)}")
    return replace(base, **changes), problems


def problems_message(problems: list[str]) -> str | None:
    """All of one settings payload's problems as one message (one popup, not one per key),
    in a fixed order, so the same payload sent again gives the same message (shown once)."""
    if not problems:
        return None
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} settings problems: " + "; ".join(sorted(problems))
