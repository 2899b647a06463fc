"""In-process FIM completion runtime for GPTBigCode-family models (SantaCoder by default).

``model_runtime.api`` holds the plain types and imports no torch; the engine and loader are
imported lazily so that ``import model_runtime.api`` stays cheap for the LSP server.
"""

from .api import (
    CancelFlag,
    CompletionOOMError,
    CompletionRequest,
    CompletionResult,
    CompletionStats,
    LoadOptions,
    ModelInfo,
    ModelLoadError,
    StopReason,
)

__all__ = [
    "CancelFlag",
    "CompletionOOMError",
    "CompletionRequest",
    "CompletionResult",
    "CompletionStats",
    "Engine",
    "LoadOptions",
    "ModelInfo",
    "ModelLoadError",
    "StopReason",
    "load_engine",
]


def __getattr__(name: str):
    if name in ("Engine", "load_engine"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'model_runtime' has no attribute {name!r}")
