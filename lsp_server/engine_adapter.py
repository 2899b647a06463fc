"""The one seam to the model runtime: a ``Protocol`` in plain types, and the loader.

Only this module (and the entry point) imports ``model_runtime`` beyond its torch-free
``model_runtime.api``; torch is imported when a real model is first loaded, in the loading
thread, so the server starts and answers at once.

Test engines: a model name starting with ``fake:`` loads a scripted engine from the file named
by the ``SANTACODER_LSP_FAKE_ENGINE`` environment variable (the test suite points it at
``tests/fakes.py``). Without that variable such names fail like any unknown model, so a fake
can never be picked by a typo or a stray setting in production.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Protocol

from model_runtime.api import (
    CancelFlag,
    CompletionRequest,
    CompletionResult,
    LoadOptions,
    ModelInfo,
    ModelLoadError,
    ProgressCallback,
    StopCallback,
)

FAKE_PREFIX = "fake:"
FAKE_ENGINE_ENV = "SANTACODER_LSP_FAKE_ENGINE"
_FAKE_MODULE = "santacoder_lsp_fake_engine"


class CompletionEngine(Protocol):
    """What the server needs from a model. ``complete`` blocks and is thread-safe (one decode
    at a time); ``cancel.is_set()`` is checked between decode steps; ``stop(text)`` is called
    after every token and returns ``None`` or the index to cut at. ``count_tokens`` may be
    called from any thread while a decode runs."""

    info: ModelInfo  # may be replaced (not mutated) while the engine runs, e.g. when a server tells its context

    def count_tokens(self, text: str) -> int: ...

    def complete(
        self, request: CompletionRequest, *, stop: StopCallback | None = None, cancel: CancelFlag | None = None
    ) -> CompletionResult: ...

    def close(self) -> None: ...


def load_completion_engine(options: LoadOptions, progress: ProgressCallback | None = None) -> CompletionEngine:
    """Blocking. Raises ``ModelLoadError`` with one line that says what to do."""
    if options.model.startswith(FAKE_PREFIX):
        return _load_fake_engine(options, progress)
    if options.backend == "openai":  # the model runs on a server; only the tokenizer loads here
        from model_runtime.openai_engine import load_openai_engine

        return load_openai_engine(options, progress)
    try:
        from model_runtime import load_engine
    except ImportError as error:  # torch or transformers missing or broken
        raise ModelLoadError(f"the model runtime cannot be imported ({error}): reinstall with pip install -e . in this environment") from error
    return load_engine(options, progress)


def _load_fake_engine(options: LoadOptions, progress: ProgressCallback | None) -> CompletionEngine:
    path = os.environ.get(FAKE_ENGINE_ENV)
    if not path:
        raise ModelLoadError(f"unknown model {options.model!r}: names starting with {FAKE_PREFIX!r} are reserved for the test suite; set the model to 'tiny', a directory or a hub id")
    module = sys.modules.get(_FAKE_MODULE)
    if module is None:
        spec = importlib.util.spec_from_file_location(_FAKE_MODULE, path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"{FAKE_ENGINE_ENV}={path!r} is not a Python file")
        module = sys.modules[_FAKE_MODULE] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.load_fake_engine(options.model[len(FAKE_PREFIX) :], options, progress)
