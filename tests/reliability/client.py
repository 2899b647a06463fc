"""A synchronous handle on the real server over stdio, for tests and benchmarks that drive it
from plain (non-async) code: hypothesis state machines, load replays.

pygls' client (pytest-lsp's ``LanguageClient``) lives on an event loop in a daemon thread and is
only ever touched from that thread; calls from the caller's thread are handed over in order, so
notifications and requests reach the server in the order they were made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from typing import Any, Callable

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.protocol.harness import capabilities, plain, server_command, server_env


class BackgroundClient:
    def __init__(self, options: dict[str, Any], command: list[str] | None = None, env: dict[str, str] | None = None):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="lsp-client", daemon=True).start()
        config = ClientServerConfig(server_command=command or server_command(), server_env=env or server_env())
        self.client: LanguageClient = self._run(config.start())
        params = types.InitializeParams(capabilities=capabilities(), initialization_options=options)
        self._run(self.client.initialize_session(params))
        self._ids = itertools.count()

    def _run(self, coroutine, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def on_loop(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the client's loop and return its result (keeps message order)."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(function())
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                done.set_exception(error)

        self.loop.call_soon_threadsafe(call)
        return done.result(30)

    def notify(self, method: str, params: Any) -> None:
        self.on_loop(lambda: self.client.protocol.notify(method, params))

    def send(self, method: str, params: Any) -> tuple[str, concurrent.futures.Future]:
        """Send a request without waiting: (its id, a future for the response)."""
        msg_id = f"r{next(self._ids)}"
        future = self.on_loop(lambda: self.client.protocol.send_request(method, params, msg_id=msg_id))
        return msg_id, future

    def cancel(self, msg_id: str) -> None:
        self.notify("$/cancelRequest", types.CancelParams(id=msg_id))

    def request(self, method: str, params: Any, timeout: float = 30) -> Any:
        return self.send(method, params)[1].result(timeout)

    def stats(self) -> dict[str, Any]:
        return plain(self.request("santacoder/stats", None))

    def wait_for_model(self, timeout_s: float = 180) -> str:
        """Wait until the model is loaded or failed; returns that state."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.stats()["model"]["state"]
            if state in ("ready", "failed") or time.monotonic() > deadline:
                return state
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        process = self.client._server
        return None if process is None else process.pid

    def alive(self) -> bool:
        process = self.client._server
        return process is not None and process.returncode is None

    def close(self) -> None:
        try:
            self._run(self.client.shutdown_session(), 20)
        except Exception:  # noqa: BLE001 - killed below
            pass
        process = self.client._server
        if process is not None and process.returncode is None:
            process.kill()
        try:
            self._run(self.client.stop(), 20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
