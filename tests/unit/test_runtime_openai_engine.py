"""The remote engine against tiny local HTTP servers: streams, stop rules, cancellation,
healing, and every failure (garbage, error statuses, cut streams, slowness, closed ports)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from model_runtime.api import (
    CompletionRequest,
    CompletionServerError,
    LoadOptions,
    ModelInfo,
    StopReason,
)
from model_runtime.fim import find_fim_tokens
from model_runtime.openai_engine import OpenAIEngine, load_openai_engine
from model_runtime.openai_http import Endpoint
from model_runtime.prompt import HealingGuide
from tests.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def tokenizer():
    from model_runtime.loader import load_tokenizer

    return load_tokenizer(LoadOptions(model="tiny"))[0]


@pytest.fixture()
def make_engine(tokenizer):
    made = []

    def make(url: str, timeout_ms: float = 3000, api_key: str = "", connect_timeout_s: float = 1.0, server_model: str = "") -> OpenAIEngine:
        fim = find_fim_tokens(tokenizer.get_vocab())
        info = ModelInfo("tiny", "remote", "server", "server", 512, "spm", fim.names, 0)
        endpoint = Endpoint.parse(url, api_key=api_key, connect_timeout_s=connect_timeout_s)
        engine = OpenAIEngine(tokenizer, fim, info, endpoint, server_model, timeout_ms, "TEST_KEY" if api_key else "")
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


REQUEST = CompletionRequest(prefix="def add(a, b):\n    ", suffix="\n", max_new_tokens=16, token_healing=False)


def test_streamed_token_ids_become_text_and_the_prompt_is_token_ids(tokenizer, make_engine):
    answer = ids_of(tokenizer, "return a + b")
    with FakeOpenAIServer(lambda x: x.start_stream() or x.tokens(answer, cached_tokens=3)) as server:
        engine = make_engine(server.url)
        result = engine.complete(REQUEST)
        assert (result.text, result.stop_reason) == ("return a + b", StopReason.EOS)
        assert result.stats.generated_tokens == len(answer) and result.stats.reused_tokens == 3
        body = server.completions()[0].body
        prompt = engine.prompts.build(REQUEST, "spm")
        assert body["prompt"] == prompt.token_ids and body["model"] == "tiny" and body["stream"] is True
        assert body["max_tokens"] == 16 and body["return_tokens_as_token_ids"] is True
        assert engine.fim.middle_id in body["stop_token_ids"]
        # the connection went back to the pool and serves the next call
        assert engine.complete(REQUEST).text == "return a + b"
        assert engine.describe()["health"] == "ok" and engine.describe()["url"] == server.url


def test_a_stop_rule_cuts_the_stream_and_the_server_sees_the_client_leave(tokenizer, make_engine):
    answer = ids_of(tokenizer, "return a + b\n    print(a)\n" * 4)
    gone = threading.Event()

    def respond(x):
        x.start_stream()
        if not x.tokens(answer, delay_s=0.01, done=False) or x.wait_for_disconnect():
            gone.set()

    with FakeOpenAIServer(respond) as server:
        engine = make_engine(server.url)
        result = engine.complete(REQUEST, stop=lambda text: text.find("\n") if "\n" in text else None)
        assert (result.text, result.stop_reason) == ("return a + b", StopReason.CALLBACK)
        assert gone.wait(2), "the stream was not closed when the stop rule fired"
        assert result.stats.generated_tokens < len(answer)


def test_a_token_below_the_confidence_floor_ends_the_suggestion_before_it(tokenizer, make_engine):
    """min_token_logprob acts on the server's per-token log-probabilities as it does in-process."""
    answer = ids_of(tokenizer, "return a + b")
    scores = [-0.1] * len(answer)
    scores[2] = -3.0  # the third token is unlikely
    with FakeOpenAIServer(lambda x: x.start_stream() or x.tokens(answer, logprobs=scores)) as server:
        engine = make_engine(server.url)
        kept = tokenizer.decode(answer[:2])
        cut = engine.complete(CompletionRequest(prefix=REQUEST.prefix, suffix="\n", max_new_tokens=16, token_healing=False, min_token_logprob=-1.0))
        assert (cut.text, cut.stop_reason) == (kept, StopReason.LOW_CONFIDENCE)
        assert cut.confidence(len(cut.text)) is not None
        free = engine.complete(CompletionRequest(prefix=REQUEST.prefix, suffix="\n", max_new_tokens=16, token_healing=False, min_token_logprob=-5.0))
        assert (free.text, free.stop_reason) == ("return a + b", StopReason.EOS)


def test_cancel_mid_stream_returns_at_once_and_closes_the_connection(tokenizer, make_engine):
    cancel, gone = threading.Event(), threading.Event()

    def respond(x):
        x.start_stream()
        x.tokens(ids_of(tokenizer, "return"), done=False)
        if x.wait_for_disconnect(10):
            gone.set()

    with FakeOpenAIServer(respond) as server:
        engine = make_engine(server.url, timeout_ms=20_000)
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        result = engine.complete(REQUEST, cancel=cancel)
        assert result.stop_reason == StopReason.CANCELLED and result.text == "return"
        assert time.monotonic() - started < 1.5
        assert gone.wait(2)
        assert engine.complete(REQUEST, cancel=cancel).stop_reason == StopReason.CANCELLED  # set before: no request
        assert len(server.completions()) == 1


def test_token_healing_asks_for_one_constrained_token_then_streams_the_rest(tokenizer, make_engine):
    request = CompletionRequest(prefix="def add(a, b):\n    ret", suffix="\n", max_new_tokens=8)
    first: list[int] = []

    def respond(x):
        x.start_stream()
        if x.request.body.get("allowed_token_ids"):
            x.tokens(first, finish="length")
        else:
            x.tokens(ids_of(tokenizer, " a + b"))

    with FakeOpenAIServer(respond) as server:
        engine = make_engine(server.url)
        prompt = engine.prompts.build(request, "spm")
        assert prompt.healed, "the test needs a healable prefix"
        allowed, _ = HealingGuide(engine.table, prompt.healed).constraint()
        first.append(engine.table.ids_starting_with(prompt.healed)[0])  # a token holding all the healed bytes
        result = engine.complete(request)
        one, rest = (r.body for r in server.completions())
        assert one["max_tokens"] == 1 and one["allowed_token_ids"] == allowed and one["prompt"] == prompt.token_ids
        healed = engine.table.text_of(first)[prompt.healed_chars :]
        # a token that only re-produces the healed bytes does not count against the cap (as in-process)
        assert rest["prompt"] == prompt.token_ids + first and rest["max_tokens"] == (8 - 1 if healed else 8) and "allowed_token_ids" not in rest
        assert result.text == healed + " a + b" and result.stats.healed_chars == prompt.healed_chars
        assert len(result.token_logprobs) == len(result.token_text_ends) == result.stats.generated_tokens


def test_healed_indentation_bars_whitespace_with_logit_bias(tokenizer, make_engine):
    """At an indented blank line the healed bytes are whitespace: once they are re-produced
    exactly, the next token may not start with whitespace (``logit_bias`` -100 on those ids)."""
    request = CompletionRequest(prefix="def add(a, b):\n    ", suffix="\n", max_new_tokens=8)

    def respond(x):
        x.start_stream()
        remaining = prompt.healed[sum(len(engine.table.bytes_of[t]) for t in x.request.body["prompt"][len(prompt.token_ids) :]) :]
        if x.request.body.get("allowed_token_ids"):
            x.tokens([engine.table.id_of_bytes[remaining]], finish="length")  # exactly the healed bytes
        else:
            x.tokens(ids_of(tokenizer, "return a + b"))

    with FakeOpenAIServer(respond) as server:
        engine = make_engine(server.url)
        prompt = engine.prompts.build(request, "spm")
        assert prompt.healed.isspace() and prompt.healed in engine.table.id_of_bytes
        result = engine.complete(request)
        bodies = [r.body for r in server.completions()]
        assert "allowed_token_ids" in bodies[0] and bodies[0]["max_tokens"] == 1
        barred = bodies[1]["logit_bias"]
        assert bodies[1]["max_tokens"] == 1 and set(map(int, barred)) == set(engine.table.ids_starting_with_whitespace)
        assert result.text == "return a + b"


def test_max_tokens_never_passes_the_servers_context(tokenizer, make_engine):
    with FakeOpenAIServer(lambda x: x.start_stream() or x.tokens([1, 2], finish="length"), models=[{"id": "tiny", "max_model_len": 64}]) as server:
        engine = make_engine(server.url)
        long = CompletionRequest(prefix="x = 1\n" * 200, max_new_tokens=48, token_healing=False)
        result = engine.complete(long)
        body = server.completions()[0].body
        assert engine.info.context_tokens == 64 and len(body["prompt"]) + body["max_tokens"] <= 64
        assert result.stats.truncated_tokens > 0


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": {"message": "Unauthorized"}}, "apiKeyEnv"),
        (404, {"error": {"message": "The model `x` does not exist."}}, "check serverUrl and serverModel"),
        (500, "Internal Server Error", "see the server's log"),
        (400, {"object": "error", "message": "too long"}, "too long"),
    ],
)
def test_error_statuses_give_one_clear_line(make_engine, caplog, status, body, expected):
    with FakeOpenAIServer(lambda x: x.status(status, body)) as server:
        engine = make_engine(server.url)
        with caplog.at_level(logging.WARNING, logger="model_runtime"):
            for _ in range(3):
                with pytest.raises(CompletionServerError, match=expected):
                    engine.complete(REQUEST)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and f"HTTP {status}" in lines[0]  # a run of the same problem is logged once
        assert engine.describe()["health"] == "failing" and expected in engine.describe()["lastError"]


def test_429_backs_off_without_touching_the_server(make_engine):
    with FakeOpenAIServer(lambda x: x.status(429, {"error": {"message": "busy"}}, headers={"Retry-After": "1"})) as server:
        engine = make_engine(server.url)
        with pytest.raises(CompletionServerError, match="overloaded"):
            engine.complete(REQUEST)
        with pytest.raises(CompletionServerError, match="overloaded"):
            engine.complete(REQUEST)
        assert len(server.completions()) == 1 and engine.describe()["health"] == "overloaded"


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda x: x.status(200, "<html>hello</html>", content_type="text/html"), "OpenAI-compatible"),
        (lambda x: x.start_stream() or x.event("this is not json") and x.end(), "not JSON"),
        (lambda x: x.start_stream() or x.event({"choices": [{"index": 0}]}) and x.end(), "without text"),
        (lambda x: x.start_stream() or x.event({"error": {"message": "engine dead"}}) and x.end(), "engine dead"),
    ],
)
def test_garbage_bodies_are_errors_not_crashes(make_engine, write, expected):
    with FakeOpenAIServer(write) as server:
        with pytest.raises(CompletionServerError, match=expected):
            make_engine(server.url).complete(REQUEST)


def test_models_listing_that_is_not_json(make_engine):
    with FakeOpenAIServer(lambda x: None, models=None) as server:
        server.respond = lambda x: x.status(200, "{{{ nope")
        with pytest.raises(CompletionServerError, match="not JSON"):
            make_engine(server.url).complete(REQUEST)


def test_a_model_the_server_does_not_serve(make_engine):
    with FakeOpenAIServer(lambda x: None) as server:
        with pytest.raises(CompletionServerError, match="does not serve model 'santacoder'.*set serverModel"):
            make_engine(server.url, server_model="santacoder").complete(REQUEST)


def test_a_stream_cut_midway_is_an_error(tokenizer, make_engine):
    def respond(x):
        x.start_stream()
        x.tokens(ids_of(tokenizer, "return a"), done=False)
        x.drop()

    with FakeOpenAIServer(respond) as server:
        with pytest.raises(CompletionServerError, match="stream from .* (ended|broke off)"):
            make_engine(server.url).complete(REQUEST)


def test_a_server_slower_than_the_timeout_gives_an_empty_deadline_result(make_engine, caplog):
    with FakeOpenAIServer(lambda x: x.start_stream() or x.wait_for_disconnect(10)) as server:
        engine = make_engine(server.url, timeout_ms=300)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="model_runtime"):
            result = engine.complete(REQUEST)
        assert (result.text, result.stop_reason) == ("", StopReason.DEADLINE)
        assert time.monotonic() - started < 1.5
        assert any("within 300 ms" in r.getMessage() and "requestTimeoutMs" in r.getMessage() for r in caplog.records)
        assert engine.describe()["health"] == "slow"


def test_a_closed_port_backs_off_then_recovers_when_the_server_starts(tokenizer, make_engine, caplog):
    port = free_port()
    engine = make_engine(f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.INFO, logger="model_runtime"):
        with pytest.raises(CompletionServerError, match="connection refused.*start the model server"):
            engine.complete(REQUEST)
        started = time.monotonic()
        with pytest.raises(CompletionServerError, match="connection refused"):
            engine.complete(REQUEST)  # backing off: fails at once
        assert time.monotonic() - started < 0.05
        assert engine.describe()["health"] == "unreachable"
        with FakeOpenAIServer(lambda x: x.start_stream() or x.tokens(ids_of(tokenizer, "return")), port=port):
            time.sleep(0.3)  # past the first backoff
            assert engine.complete(REQUEST).text == "return"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("connection refused" in m for m in messages) == 1 and any("answers again" in m for m in messages)
    assert engine.describe()["health"] == "ok"


def test_dns_and_tls_failures_say_what_to_do(make_engine):
    with pytest.raises(CompletionServerError, match="cannot resolve the host 'santacoder-test.invalid'"):
        make_engine("http://santacoder-test.invalid:8000").complete(REQUEST)
    with FakeOpenAIServer(lambda x: None) as plain:  # https:// to a plain-HTTP server
        with pytest.raises(CompletionServerError, match="TLS with .* failed.*use http://"):
            make_engine(plain.url.replace("http://", "https://")).complete(REQUEST)


def test_the_api_key_is_sent_but_never_shown(tokenizer, make_engine, caplog):
    secret = "sk-very-secret-123"
    with FakeOpenAIServer(lambda x: x.status(401, {"error": {"message": "bad key"}})) as server:
        engine = make_engine(server.url, api_key=secret)
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(CompletionServerError) as raised:
                engine.complete(REQUEST)
        assert server.requests[0].headers["authorization"] == f"Bearer {secret}"
        shown = " ".join([str(raised.value), repr(engine.endpoint), str(engine.describe()), caplog.text])
        assert secret not in shown and engine.describe()["apiKey"] == "set"


def test_load_reads_the_key_from_the_named_variable_and_survives_a_missing_server(monkeypatch, caplog):
    monkeypatch.setenv("SANTACODER_TEST_KEY", "k-123")
    options = LoadOptions(model="tiny", backend="openai", server_url=f"http://127.0.0.1:{free_port()}", api_key_env="SANTACODER_TEST_KEY")
    with caplog.at_level(logging.WARNING, logger="model_runtime"):
        engine = load_openai_engine(options)
    try:
        assert engine.endpoint.api_key == "k-123" and engine.describe()["health"] == "unreachable"
        assert engine.count_tokens("def f():") > 0 and engine.info.context_tokens == 512
        assert any("connection refused" in r.getMessage() for r in caplog.records)
    finally:
        engine.close()


def test_bad_urls_are_refused_with_what_to_do():
    for url in ("ftp://host", "localhost:8000", "http://user:pw@host"):
        with pytest.raises(ValueError, match="serverUrl"):
            Endpoint.parse(url)
    assert Endpoint.parse("https://models.example/v1/").display == "https://models.example:443"
