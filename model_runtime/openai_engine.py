"""A completion engine whose model runs on an OpenAI-compatible server (vLLM), for teams.

Contract: that of ``Engine.complete`` (model_runtime/engine.py). Blocking and thread-safe; the
prompt is built here with the same tokenizer, budget, token healing and FIM layout as
in-process and sent to ``/v1/completions`` as token ids; the stream carries token ids back
(vLLM's ``return_tokens_as_token_ids``), decoded with the same byte tables, and ``stop(text)``
is called with the whole text after every token. ``cancel.is_set()`` and the deadline are
watched by one thread per engine that cuts the HTTP exchange at once; the server (vLLM does)
then aborts the sequence. Unlike in-process, calls are not serialized: the server batches them.

Prompts come from ``model_runtime.prompt.PromptBuilder``, as in-process. Token healing: while
``HealingGuide`` constrains the next token, each token is asked for alone (vLLM's
``allowed_token_ids``, or ``logit_bias`` -100 on the ids it bars); then the rest streams in one
request. Each prompt is the one before plus one token, so the server's prefix cache covers it.

Stats: ``queue_ms`` is time spent here before the request went out (probing, retries),
``prefill_ms`` the time to the first token (the server's queue and prefill, and the network),
``decode_ms`` the rest; ``reused_tokens`` is the server's ``cached_tokens`` (vLLM:
``--enable-prompt-tokens-details``), which vLLM tells in a stream's last chunk only: 0 when
the stream was cut (a stop rule fired) or the server does not say. The prefix-cache hit rate
of a cut stream is on the server's ``/metrics`` (``vllm:prefix_cache_hits``).

Failures (see ``openai_http``) are logged once per run of the same problem and raised as
``CompletionServerError``; a completion slower than the deadline returns what it has with
``StopReason.DEADLINE`` (logged the same way). Connection errors and HTTP 429/503 make the
engine back off (0.25 s, doubling to 8 s): meanwhile calls fail at once without touching the
network, then one call tries again. The API key is read from the environment at load and
never logged.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import replace
from typing import Any, Sequence

from .api import (
    CancelFlag,
    CompletionRequest,
    CompletionResult,
    CompletionServerError,
    CompletionStats,
    LoadOptions,
    ModelInfo,
    ModelLoadError,
    ProgressCallback,
    StopCallback,
    StopReason,
    check_fim_order,
)
from .fim import FimTokens, find_fim_tokens
from .openai_decoding import WATCH_INTERVAL_S, Decoding, Watchdog
from .openai_http import (
    ConnectionPool,
    Cutter,
    Endpoint,
    ServerProblem,
    open_stream,
    request_json,
)
from .prompt import Prompt, PromptBuilder
from .vocabulary import TokenTable

log = logging.getLogger(__name__)

_TOKEN_ID_PREFIX = "token_id:"
_BACKOFF_FIRST_S = 0.25
_BACKOFF_MAX_S = 8.0
_CONNECT_RETRY_DELAYS_S = (0.05, 0.2)  # within one call, before giving up on a refused connection
_CUT_REASONS = {"cancelled": StopReason.CANCELLED, "closed": StopReason.CANCELLED, "deadline": StopReason.DEADLINE}
# Stop reasons for which the client cuts the stream (for the others the server ends it anyway).
_CUT_ON = (StopReason.CALLBACK, StopReason.CONTEXT_FULL)
_BANNED_LOGIT_BIAS = -100.0  # the OpenAI API's strongest bias: e^-100 leaves such a token no chance


def _now_ms() -> float:
    return time.perf_counter() * 1000.0


# -- the engine ---------------------------------------------------------------------------------


class OpenAIEngine:
    def __init__(
        self,
        tokenizer,
        fim: FimTokens,
        info: ModelInfo,
        endpoint: Endpoint,
        server_model: str = "",
        request_timeout_ms: float = 10_000,
        api_key_env: str = "",
    ):
        tokenizer.model_max_length = 1 << 62  # we cut prompts to the context ourselves
        self.tokenizer = tokenizer
        self.fim = fim
        self.info = info
        self.table = TokenTable(tokenizer, extra_stop_ids=(fim.prefix_id, fim.middle_id, fim.suffix_id))
        self.endpoint = endpoint
        self.request_timeout_ms = request_timeout_ms
        self._configured_model = server_model
        self._api_key_env = api_key_env
        self.prompts = PromptBuilder(self.tokenize, self.table, fim, info)
        self._local_context = info.context_tokens
        self._pool = ConnectionPool(endpoint)
        self._watchdog = Watchdog()
        self._tokenizer_lock = threading.Lock()
        self._state_lock = threading.Lock()  # guards everything below
        self._served_model: str | None = None  # set by a successful probe
        self._health = "unknown"
        self._problem: str | None = None
        self._backoff_s = 0.0
        self._retry_at = 0.0  # time.monotonic() before which calls fail at once
        # promptTokens/cachedPromptTokens: over the streams that told their cached_tokens
        self.counters = {"requests": 0, "failures": 0, "promptTokens": 0, "cachedPromptTokens": 0, "generatedTokens": 0}
        self.http_requests = 0  # /v1/completions requests sent (token healing may send several per call)

    # -- text <-> tokens -------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        with self._tokenizer_lock:
            return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    # -- one completion --------------------------------------------------------------------
    def complete(self, request: CompletionRequest, *, stop: StopCallback | None = None, cancel: CancelFlag | None = None) -> CompletionResult:
        start_ms = _now_ms()
        deadline_ms = start_ms + (request.timeout_ms if request.timeout_ms is not None else self.request_timeout_ms)
        order = check_fim_order(request.fim_order or self.info.fim_order)
        if cancel is not None and cancel.is_set():
            return CompletionResult("", StopReason.CANCELLED)
        self._raise_if_backing_off()
        cutter = Cutter()
        with self._watchdog.watch(cutter, cancel, deadline_ms):
            if self._served_model is None:
                try:
                    self._probe(cutter)
                except ServerProblem as problem:
                    if problem.kind != "aborted":
                        self._fail(problem)  # raises CompletionServerError
                    return CompletionResult("", _CUT_REASONS.get(problem.message, StopReason.CANCELLED), CompletionStats(queue_ms=_now_ms() - start_ms))
            prompt = self.prompts.build(request, order)
            decoding = Decoding(self.table, request, prompt, stop, self.info.context_tokens)
            sent_ms = _now_ms()
            try:
                self._decode(decoding, request, prompt, cutter)
            except ServerProblem as problem:
                if problem.kind != "aborted":
                    self._fail(problem)  # raises CompletionServerError
                decoding.reason = _CUT_REASONS.get(problem.message, StopReason.CANCELLED)
        end_ms = _now_ms()
        if decoding.reason == StopReason.DEADLINE:
            self._slow(deadline_ms - start_ms, decoding.generated)
        elif decoding.reason != StopReason.CANCELLED:
            self._succeeded()
        first_ms = decoding.first_token_ms or end_ms
        cached = decoding.cached_tokens or 0
        with self._state_lock:
            self.counters["requests"] += 1
            self.counters["generatedTokens"] += decoding.generated
        stats = CompletionStats(
            prompt_tokens=len(prompt.token_ids),
            reused_tokens=cached,
            prefilled_tokens=len(prompt.token_ids) - cached,
            generated_tokens=decoding.generated,
            queue_ms=sent_ms - start_ms,
            prefill_ms=first_ms - sent_ms,
            decode_ms=end_ms - first_ms,
            healed_chars=prompt.healed_chars,
            truncated_tokens=prompt.truncated_tokens,
            context_tokens=prompt.context_tokens,
        )
        reason = decoding.reason or StopReason.EOS
        return CompletionResult(decoding.text, reason, stats, tuple(decoding.logprobs), tuple(decoding.text_ends))

    def _decode(self, decoding: Decoding, request: CompletionRequest, prompt: Prompt, cutter: Cutter) -> None:
        """Token healing first, one constrained token per request (``HealingGuide``: an
        allowed list, or ids to avoid), each prompt the one before plus the token it gave; then
        the rest in one stream. Raises ``ServerProblem``."""
        while decoding.reason is None and not decoding.healing.done:
            allowed, banned = decoding.healing.constraint()
            if decoding.room() <= 0:
                decoding.reason = StopReason.CONTEXT_FULL
                return
            self._stream_into(decoding, request, prompt.token_ids + decoding.ids, 1, allowed, banned, cutter, last_phase=False)
            if decoding.pieces:  # a server without token ids: healing cannot be followed further
                break
        if decoding.reason is None:
            room = decoding.room()
            if room <= 0:
                decoding.reason = StopReason.CONTEXT_FULL
                return
            self._stream_into(decoding, request, prompt.token_ids + decoding.ids, room, None, None, cutter, last_phase=True)

    def _body(self, request: CompletionRequest, prompt_ids: Sequence[int], max_tokens: int, allowed: list[int] | None, banned: list[int] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._served_model,
            "prompt": list(prompt_ids),
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p if request.temperature > 0 else 1.0,
            "stream": True,
            "stream_options": {"include_usage": True},  # vLLM tells cached_tokens in the final chunk only
            # vLLM's extensions: token ids in the stream, our stop ids, the healing constraint.
            "logprobs": 0,
            "return_tokens_as_token_ids": True,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.ignore_eos:
            body["ignore_eos"] = True
        else:
            body["stop_token_ids"] = sorted(self.table.stop_ids)
        if allowed is not None:
            body["allowed_token_ids"] = allowed
        if banned:
            body["logit_bias"] = {str(token): _BANNED_LOGIT_BIAS for token in banned}
        return body

    def _stream_into(
        self,
        decoding: Decoding,
        request: CompletionRequest,
        prompt_ids: list[int],
        max_tokens: int,
        allowed: list[int] | None,
        banned: list[int] | None,
        cutter: Cutter,
        last_phase: bool,
    ) -> None:
        """Stream one request into ``decoding``; cut the exchange as soon as a stop rule fires."""
        body = self._body(request, prompt_ids, max_tokens, allowed, banned)
        stream = self._open_with_retries(body, cutter)
        events = stream.events()
        finish_reason, decoding.phase_cached = None, None
        try:
            for event in events:
                finish_reason = self._take_event(decoding, event) or finish_reason
                if decoding.reason in _CUT_ON:
                    cutter.cut("stopped")  # the server sees us leave and stops decoding
                    break
        finally:
            events.close()
            if decoding.phase_cached is not None:  # only streams that ran to their end say
                with self._state_lock:
                    self.counters["promptTokens"] += len(prompt_ids)
                    self.counters["cachedPromptTokens"] += decoding.phase_cached
        decoding.finished(finish_reason, last_phase)

    def _take_event(self, decoding: Decoding, event: dict[str, Any]) -> Any:
        usage = event.get("usage")
        if isinstance(usage, dict) and decoding.phase_cached is None:
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
                decoding.phase_cached = details["cached_tokens"]
                if decoding.cached_tokens is None:  # the call's figure: its first request's
                    decoding.cached_tokens = decoding.phase_cached
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None  # the usage-only event at the end
        choice = choices[0]
        ids = _token_ids(choice.get("logprobs"))
        if ids is not None:
            logprobs = choice["logprobs"].get("token_logprobs")
            if not isinstance(logprobs, list) or len(logprobs) != len(ids):
                logprobs = [0.0] * len(ids)
            for token, logprob in zip(ids, logprobs):
                decoding.push_id(token, float(logprob) if isinstance(logprob, (int, float)) else 0.0)
        elif isinstance(choice.get("text"), str):
            decoding.push_text(choice["text"])
        else:
            raise ServerProblem("protocol", f"{self.endpoint.display} sent a completion event without text: check that serverUrl is an OpenAI-compatible server")
        return choice.get("finish_reason")

    def _open_with_retries(self, body: dict[str, Any], cutter: Cutter):
        for delay_s in (*_CONNECT_RETRY_DELAYS_S, None):
            with self._state_lock:
                self.http_requests += 1
            try:
                return open_stream(self._pool, "/v1/completions", body, cutter)
            except ServerProblem as problem:
                if problem.kind != "connect" or delay_s is None:
                    raise
            deadline = time.monotonic() + delay_s
            while time.monotonic() < deadline:
                if cutter.reason is not None:
                    raise ServerProblem("aborted", cutter.reason)
                time.sleep(WATCH_INTERVAL_S)
        raise AssertionError("unreachable")

    # -- the server: probe, health, backoff --------------------------------------------------
    def _probe(self, cutter: Cutter | None = None) -> None:
        """Ask ``/v1/models`` which model is served and its context; raises ``ServerProblem``."""
        listing = request_json(self._pool, "GET", "/v1/models", cutter=cutter)
        models = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in models) or not models:
            raise ServerProblem("protocol", f"{self.endpoint.display}/v1/models lists no models: check that serverUrl is an OpenAI-compatible server")
        names = [m["id"] for m in models]
        name = self._configured_model or names[0]
        if name not in names:
            raise ServerProblem("http", f"{self.endpoint.display} does not serve model {name!r} (it serves {', '.join(map(repr, names))}): set serverModel to one of them")
        card = models[names.index(name)]
        server_context = card.get("max_model_len")
        context = self._local_context
        if isinstance(server_context, int) and server_context > 0:
            context = min(context, server_context) if context else server_context
        with self._state_lock:
            self.info = replace(self.info, context_tokens=context)
            self.prompts.info = self.info  # the server's context budgets the prompts from now on
            self._served_model = name

    def check(self) -> str | None:
        """Probe the server now; ``None`` if it answers, else the problem's message (logged)."""
        try:
            self._probe()
        except ServerProblem as problem:
            try:
                self._fail(problem)
            except CompletionServerError as error:
                return str(error)
        self._succeeded()
        return None

    def _raise_if_backing_off(self) -> None:
        with self._state_lock:
            waiting = self._retry_at > time.monotonic()
            problem = self._problem
        if waiting and problem:
            raise CompletionServerError(problem)

    def _fail(self, problem: ServerProblem) -> None:
        with self._state_lock:
            self.counters["failures"] += 1
            if problem.kind in ("connect", "overloaded"):
                self._backoff_s = min(_BACKOFF_MAX_S, max(_BACKOFF_FIRST_S, self._backoff_s * 2))
                self._retry_at = time.monotonic() + max(self._backoff_s, problem.retry_after_s or 0.0)
            self._health = {"connect": "unreachable", "overloaded": "overloaded"}.get(problem.kind, "failing")
            repeated, self._problem = self._problem == problem.message, problem.message
        if not repeated:
            log.warning("%s", problem.message)
        raise CompletionServerError(problem.message) from None

    def _slow(self, timeout_ms: float, generated: int) -> None:
        message = (
            f"{self.endpoint.display} did not finish a completion within {timeout_ms:.0f} ms ({generated} tokens by then): "
            "raise requestTimeoutMs, or check the server's load"
        )
        with self._state_lock:
            self._health = "slow"
            repeated, self._problem = self._problem == message, message
        if not repeated:
            log.warning("%s", message)

    def _succeeded(self) -> None:
        with self._state_lock:
            recovered = self._problem is not None
            self._health, self._problem, self._backoff_s, self._retry_at = "ok", None, 0.0, 0.0
        if recovered:
            log.info("%s answers again", self.endpoint.display)

    def describe(self) -> dict[str, Any]:
        """For ``santacoder/stats``: where the server is and how it does; never the key."""
        with self._state_lock:
            counters: dict[str, float] = dict(self.counters)
            out: dict[str, Any] = {
                "backend": "openai",
                "url": self.endpoint.display,
                "serverModel": self._served_model or self._configured_model or None,
                "health": self._health,
                "apiKey": "set" if self.endpoint.api_key else ("missing: its variable is not set" if self._api_key_env else "none"),
            }
            if self._problem:
                out["lastError"] = self._problem
        prompt = counters["promptTokens"]
        counters["prefixCacheHitRate"] = round(counters["cachedPromptTokens"] / prompt, 4) if prompt else 0.0
        out["server"] = counters
        return out

    def close(self) -> None:
        self._watchdog.close()
        self._pool.close()


def _token_ids(logprobs: Any) -> list[int] | None:
    """The ids of a chunk's tokens from vLLM's ``token_id:N`` spelling; ``None`` without them."""
    if not isinstance(logprobs, dict):
        return None
    tokens = logprobs.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) and t.startswith(_TOKEN_ID_PREFIX) for t in tokens):
        return None
    try:
        return [int(t[len(_TOKEN_ID_PREFIX) :]) for t in tokens]
    except ValueError:
        return None


def load_openai_engine(options: LoadOptions, progress: ProgressCallback | None = None) -> OpenAIEngine:
    """The tokenizer locally, the model on the server. The server need not be up yet: an
    unreachable one is logged once and tried again by the next completion."""
    from .loader import load_tokenizer, read_context_tokens

    report = progress or (lambda stage, fraction: None)
    try:
        endpoint = Endpoint.parse(
            options.server_url,
            api_key=_read_api_key(options.api_key_env),
            connect_timeout_s=options.connect_timeout_ms / 1000,
            read_timeout_s=max(30.0, options.request_timeout_ms / 1000 * 2),
        )
    except ValueError as error:
        raise ModelLoadError(str(error)) from None
    report("loading tokenizer", 0.1)
    tokenizer, source = load_tokenizer(options)
    fim = find_fim_tokens(tokenizer.get_vocab(), options.fim_tokens)
    context = read_context_tokens(source, options.trust_remote_code) or 2048
    info = ModelInfo(
        name=options.model,
        device="remote",
        dtype="server",
        quantization="server",
        context_tokens=context,
        fim_order=options.fim_order,
        fim_tokens=fim.names,
        parameters=0,
    )
    engine = OpenAIEngine(tokenizer, fim, info, endpoint, options.server_model, options.request_timeout_ms, options.api_key_env)
    report("asking the server", 0.6)
    problem = engine.check()
    if problem is None:
        log.info("using %s at %s (tokenizer of %s, context %d tokens)", engine.describe()["serverModel"], endpoint.display, options.model, engine.info.context_tokens)
    report("ready", 1.0)
    return engine


def _read_api_key(variable: str) -> str:
    if not variable:
        return ""
    key = os.environ.get(variable, "")
    if not key:
        # Named only when it looks like a variable's name: a pasted key must not reach the log.
        name = variable if re.fullmatch(r"[A-Z][A-Z0-9_]*", variable) else "the variable named by apiKeyEnv"
        log.warning("apiKeyEnv: %s is not set (or empty): set it in the environment the editor starts the server from", name)
    return key.strip()
