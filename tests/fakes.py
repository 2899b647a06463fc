"""A scripted stand-in for the model runtime's engine, for unit and protocol tests.

Selected in the server by a model name ``fake:<spec>`` while ``SANTACODER_LSP_FAKE_ENGINE``
names this file (see ``lsp_server.engine_adapter``). ``<spec>`` is empty, a JSON object, or a
path to a JSON file::

    {"rules": [{"after": "def add(a, b):", "before": "", "text": "\\n    return a + b", "logprob": -0.1}],
     "default": "", "tokenDelayMs": 0, "loadDelayMs": 0, "loadError": null, "contextTokens": 2048,
     "strayOutput": null, "recordPath": null}

The first rule whose ``after`` ends the prefix (and whose ``before``, if given, starts the
suffix) gives the completion; ``default`` otherwise. Tokens are words, single whitespace
characters and single other characters. The text is emitted token by token, with the stop
callback and the cancel flag honoured like the real engine, and each call is recorded (in
``calls``, and with ``recordPath`` also appended to that file as one JSON object a line:
``{"prefix", "suffix", "extraContext", "cacheKey"}``, for tests that drive a server process). Every
token of a rule's text gets the rule's ``logprob`` (default -0.1, probability 0.9).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_runtime.api import (
    CompletionRequest,
    CompletionResult,
    CompletionStats,
    LoadOptions,
    ModelInfo,
    ModelLoadError,
    StopReason,
)

_TOKEN = re.compile(r"\w+|\s|[^\w\s]")
FIM_TOKENS = ("<fim-prefix>", "<fim-middle>", "<fim-suffix>")


def fake_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Rule:
    after: str
    text: str
    before: str | None = None
    logprob: float = -0.1  # of every token of ``text`` (the confidence gate reads it)

    def matches(self, request: CompletionRequest) -> bool:
        if not request.prefix.endswith(self.after):
            return False
        return self.before is None or request.suffix.startswith(self.before)


@dataclass
class FakeEngine:
    rules: list[Rule] = field(default_factory=list)
    default: str = ""
    token_delay_ms: float = 0.0
    context_tokens: int = 2048
    fim_order: str = "spm"
    quantization: str = "none"  # as asked for in the load options; the fake has no weights to quantize
    calls: list[CompletionRequest] = field(default_factory=list)
    cancelled_calls: int = 0
    record_path: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo("fake", "cpu", "fp32", self.quantization, self.context_tokens, self.fim_order, FIM_TOKENS, 0)  # type: ignore[arg-type]

    def count_tokens(self, text: str) -> int:
        return len(fake_tokens(text))

    def script(self, request: CompletionRequest) -> tuple[str, float]:
        for rule in self.rules:
            if rule.matches(request):
                return rule.text, rule.logprob
        return self.default, -0.1

    def complete(self, request: CompletionRequest, *, stop=None, cancel=None) -> CompletionResult:
        start = time.perf_counter()
        with self._lock:  # one decode at a time, like the real engine
            self.calls.append(request)
            if self.record_path:
                record = {"prefix": request.prefix, "suffix": request.suffix, "extraContext": request.extra_context, "cacheKey": request.cache_key}
                with open(self.record_path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")
            prompt = sum(self.count_tokens(text) for text in (request.extra_context, request.prefix, request.suffix)) + len(FIM_TOKENS)
            text, generated, reason = "", 0, StopReason.EOS
            script, logprob = self.script(request)
            ends: list[int] = []
            for token in fake_tokens(script):
                if cancel is not None and cancel.is_set():
                    reason = StopReason.CANCELLED
                    self.cancelled_calls += 1
                    break
                if generated >= request.max_new_tokens:
                    reason = StopReason.MAX_TOKENS
                    break
                if request.min_token_logprob is not None and logprob < request.min_token_logprob:
                    reason = StopReason.LOW_CONFIDENCE  # as the engine: end before the unlikely token
                    break
                if self.token_delay_ms:
                    time.sleep(self.token_delay_ms / 1000)
                text, generated = text + token, generated + 1
                cut = stop(text) if stop is not None else None
                if cut is not None:
                    text, reason = text[:cut], StopReason.CALLBACK
                ends.append(len(text))
                if cut is not None:
                    break
            elapsed_ms = (time.perf_counter() - start) * 1000
            stats = CompletionStats(prompt_tokens=prompt, prefilled_tokens=prompt, generated_tokens=generated, decode_ms=elapsed_ms)
            return CompletionResult(text, reason, stats, (logprob,) * len(ends), tuple(ends))

    def close(self) -> None:
        pass


def engine_from_spec(spec: dict[str, Any]) -> FakeEngine:
    return FakeEngine(
        rules=[Rule(r["after"], r["text"], r.get("before"), float(r.get("logprob", -0.1))) for r in spec.get("rules", [])],
        default=spec.get("default", ""),
        token_delay_ms=float(spec.get("tokenDelayMs", 0)),
        context_tokens=int(spec.get("contextTokens", 2048)),
        record_path=spec.get("recordPath"),
    )


def load_fake_engine(spec_text: str, options: LoadOptions, progress=None) -> FakeEngine:
    """Entry point used by ``lsp_server.engine_adapter`` for ``fake:`` model names."""
    spec_text = spec_text.strip()
    if spec_text and not spec_text.startswith("{"):
        spec_text = Path(spec_text).read_text(encoding="utf-8")
    spec = json.loads(spec_text) if spec_text else {}
    steps = 4
    for step in range(steps):
        if progress is not None:
            progress("loading fake model", step / steps)
        time.sleep(float(spec.get("loadDelayMs", 0)) / 1000 / steps)
    if spec.get("strayOutput"):  # what a chatty library might do while loading
        print(spec["strayOutput"])
        os.write(1, (spec["strayOutput"] + "\n").encode())
    if spec.get("loadError"):
        raise ModelLoadError(spec["loadError"])
    engine = engine_from_spec(spec)
    engine.fim_order = options.fim_order
    engine.quantization = options.quantization
    if progress is not None:
        progress("ready", 1.0)
    return engine
