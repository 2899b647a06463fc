"""Background loading: the newest load wins, failures become one line, fakes need the switch."""

from __future__ import annotations

import asyncio
import time

import pytest

from lsp_server.engine_adapter import FAKE_ENGINE_ENV, load_completion_engine
from lsp_server.engine_host import EngineHost
from model_runtime.api import LoadOptions, ModelLoadError
from tests.fakes import FakeEngine


async def test_a_newer_load_wins_over_a_slower_older_one():
    engines = {"slow": FakeEngine(default="slow"), "fast": FakeEngine(default="fast")}
    closed = []

    def loader(options, progress):
        if options.model == "slow":
            time.sleep(0.3)
        engine = engines[options.model]
        engine.close = lambda: closed.append(options.model)  # type: ignore[method-assign]
        return engine

    host = EngineHost(loader)
    older = asyncio.ensure_future(host.load(LoadOptions(model="slow")))
    await asyncio.sleep(0.05)
    assert await host.load(LoadOptions(model="fast")) is None
    assert await older is None
    assert host.engine is engines["fast"] and host.state == "ready"
    assert closed == ["slow"]  # the superseded engine was closed, not kept


async def test_a_failed_load_keeps_its_message_and_no_engine():
    def loader(options, progress):
        raise ModelLoadError("model directory '/x' does not exist: fix the path")

    host = EngineHost(loader)
    assert await host.load(LoadOptions(model="/x")) == "model directory '/x' does not exist: fix the path"
    assert (host.engine, host.state) == (None, "failed")
    assert host.describe()["error"].startswith("model directory")


def test_fake_model_names_are_refused_without_the_test_switch(monkeypatch):
    monkeypatch.delenv(FAKE_ENGINE_ENV, raising=False)
    with pytest.raises(ModelLoadError, match="reserved for the test suite"):
        load_completion_engine(LoadOptions(model="fake:"))
