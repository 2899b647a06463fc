"""Owns the loaded engine: loads it in a background thread, swaps it on reload, remembers
why a load failed. ``engine`` is ``None`` until a load succeeds, so requests that come
earlier get an empty answer at once instead of waiting.

Loads run in daemon threads (a load cannot be interrupted, and must not hold the process up
at exit). When settings change during a load, the newer load wins: an older load that
finishes later is closed and discarded. ``engine``/``state`` are written on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Literal

from model_runtime.api import LoadOptions, ModelLoadError, ProgressCallback

from .engine_adapter import CompletionEngine, load_completion_engine

log = logging.getLogger(__name__)

State = Literal["idle", "loading", "ready", "failed"]
Loader = Callable[[LoadOptions, "ProgressCallback | None"], CompletionEngine]


class EngineHost:
    def __init__(self, loader: Loader = load_completion_engine):
        self._loader = loader
        self.engine: CompletionEngine | None = None
        self.state: State = "idle"
        self.options: LoadOptions | None = None
        self.error: str | None = None
        self._generation = 0

    async def load(self, options: LoadOptions, progress: ProgressCallback | None = None) -> str | None:
        """Load (or reload) with ``options``. Returns ``None`` on success or when superseded by
        a newer load (then ``self.options is not options``), else the load error's one-line
        message. ``progress`` runs in the loading thread."""
        self._generation += 1
        generation = self._generation
        old, self.engine = self.engine, None
        self.state, self.options, self.error = "loading", options, None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[CompletionEngine] = loop.create_future()

        def run() -> None:
            try:
                if old is not None:
                    old.close()  # here, not on the loop: it waits for a running decode to end
                engine = self._loader(options, progress)
            except ModelLoadError as error:
                loop.call_soon_threadsafe(_settle, done, None, str(error))
            except Exception as error:  # a failed load must never take the server down
                log.exception("model load failed")
                loop.call_soon_threadsafe(_settle, done, None, f"could not load {options.model!r}: {type(error).__name__}: {error}")
            else:
                loop.call_soon_threadsafe(_settle, done, engine, None)

        threading.Thread(target=run, name="model-load", daemon=True).start()
        try:
            engine = await done
        except ModelLoadError as error:
            if generation == self._generation:
                self.state, self.error = "failed", str(error)
                return self.error
            return None
        if generation != self._generation:
            engine.close()  # a newer load started meanwhile
            return None
        self.engine, self.state = engine, "ready"
        return None

    def close(self) -> None:
        self._generation += 1
        if self.engine is not None:
            self.engine.close()
        self.engine, self.state = None, "idle"

    def describe(self) -> dict[str, object]:
        """The model for ``santacoder/stats`` and the headless JSON; ``quantization`` is what
        the loaded engine runs with, else what the current load asks for."""
        out: dict[str, object] = {"state": self.state, "name": self.options.model if self.options else None}
        out["quantization"] = self.options.quantization if self.options else None
        out["backend"] = self.options.backend if self.options else "inprocess"
        if self.error:
            out["error"] = self.error
        if self.engine is not None:
            info = self.engine.info
            out.update(device=info.device, dtype=info.dtype, quantization=info.quantization, contextTokens=info.context_tokens, parameters=info.parameters)
            describe = getattr(self.engine, "describe", None)  # a remote engine: its URL and health
            if callable(describe):
                out.update(describe())
        return out


def _settle(future: asyncio.Future, engine: CompletionEngine | None, error: str | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(ModelLoadError(error))
    else:
        future.set_result(engine)
