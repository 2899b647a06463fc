"""Plain values that cross the seam between the runtime and its callers.

Nothing here imports torch, so the LSP server (and its fake engine in tests) can use these
types without loading a model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

FimOrder = Literal["psm", "spm"]
Quantization = Literal["none", "int8", "nf4"]
QUANTIZATIONS: tuple[str, ...] = ("none", "int8", "nf4")
DEVICES: tuple[str, ...] = ("auto", "cuda", "mps", "cpu")
DTYPES: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")
FIM_ORDERS: tuple[str, ...] = ("psm", "spm")

# Called with the full text generated so far (after every decoded token). Return None to go
# on, or a character index: the result is cut to text[:index] and decoding stops.
StopCallback = Callable[[str], "int | None"]
# Called with (stage, fraction or None) while a model loads; fraction is in [0, 1].
ProgressCallback = Callable[[str, "float | None"], None]


class CancelFlag(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``. Checked between decode steps."""

    def is_set(self) -> bool: ...


class StopReason(str, enum.Enum):
    EOS = "eos"  # end-of-text or a FIM token was generated
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    CALLBACK = "callback"  # the caller's stop callback cut the text
    CANCELLED = "cancelled"
    DEADLINE = "deadline"
    CONTEXT_FULL = "context_full"  # the model's position limit was reached


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. ``model`` is a bundled short name, a local directory or a hub id."""

    model: str = "tiny"
    device: str = "auto"
    dtype: str = "auto"  # auto: bf16 on CUDA, fp32 elsewhere
    quantization: str = "none"
    trust_remote_code: bool = False
    kv_cache_bytes: int = 256 * 1024 * 1024
    fim_order: FimOrder = "spm"
    fim_tokens: tuple[str, str, str] | None = None  # explicit (prefix, middle, suffix) override
    threads: int = 0  # torch CPU threads; 0: automatic (one for small models on a CPU)
    static_decode: bool = True  # lean static-KV forward for multi-query GPTBigCode; False: transformers' forward


@dataclass(frozen=True)
class CompletionRequest:
    """One fill-in-the-middle request. Text is plain str; the runtime tokenizes it."""

    prefix: str
    suffix: str = ""
    # Text from other files, placed before the FIM layout (``FimTokens.layout``'s context_ids).
    # Keep it byte-identical between keystrokes so its KV is reused; dropped whole if it cannot fit.
    extra_context: str = ""
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None
    stop_sequences: tuple[str, ...] = ()
    fim_order: FimOrder | None = None  # None: the engine's default
    cache_key: str | None = None  # names a KV slot, e.g. a document URI
    timeout_ms: float | None = None  # deadline for the whole call, queueing included
    token_healing: bool = True
    ignore_eos: bool = False  # benchmarks: decode through end-of-text/FIM tokens (never returned)


@dataclass(frozen=True)
class CompletionStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV came from the cache
    prefilled_tokens: int = 0  # prompt tokens run through the model for this request
    generated_tokens: int = 0
    queue_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    healed_chars: int = 0  # characters of the prefix moved into the constrained first token
    truncated_tokens: int = 0  # prompt tokens dropped to fit the model's context (or after running out of memory)
    oom_retries: int = 0  # 1 when the first attempt ran out of memory and a shorter prompt was used


@dataclass(frozen=True)
class CompletionResult:
    text: str
    stop_reason: StopReason
    stats: CompletionStats = field(default_factory=CompletionStats)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    device: str
    dtype: str
    quantization: str
    context_tokens: int  # the model's position limit
    fim_order: FimOrder
    fim_tokens: tuple[str, str, str]
    parameters: int


class ModelLoadError(RuntimeError):
    """A model could not be loaded. The message is one line that says what to do."""


class CompletionOOMError(RuntimeError):
    """One completion ran out of memory twice: with its prompt, then with about half of it.

    Only that request failed: the engine holds no lock and no half-written KV afterwards, so
    the next request runs normally. The message is one line that says what to do.
    """
