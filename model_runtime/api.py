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
BACKENDS: tuple[str, ...] = ("inprocess", "openai")  # openai: a client of an OpenAI-compatible server (vLLM)


def check_fim_order(order: object) -> FimOrder:
    """``order`` if it is one of ``FIM_ORDERS``, else ``ValueError`` saying what to use: the
    one check of a FIM order (the engines call it per request, the loaders per load, the
    layout once more for direct callers such as training)."""
    if order not in FIM_ORDERS:
        raise ValueError(f"unknown FIM order {order!r}: use " + " or ".join(repr(o) for o in FIM_ORDERS))
    return order  # type: ignore[return-value]

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
    CALLBACK = "callback"  # the caller's stop callback cut the text
    CANCELLED = "cancelled"
    LOW_CONFIDENCE = "low_confidence"  # the next token was less likely than min_token_logprob
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
    # Backend "openai": ``model`` names the tokenizer only (loaded locally, so prompts are the
    # same token ids as in-process); the model runs on the server at ``server_url``.
    backend: str = "inprocess"
    server_url: str = "http://127.0.0.1:8000"
    server_model: str = ""  # the name the server serves the model under; "": the one it serves
    api_key_env: str = ""  # name of the environment variable holding the API key; "": no key
    request_timeout_ms: int = 10_000  # one completion, when the request sets no timeout
    connect_timeout_ms: int = 2_000
    # Greedy decoding through the fixed-shape step (model_runtime/fast_decode.py) with prompt-lookup
    # speculation verifying up to ``draft_tokens`` per forward (0: one token per forward); a short
    # uncached prompt tail is fed in the step's first forward. Needs the static path; sampling,
    # healing's constrained tokens and quantized models use the plain loop. Same answers as the
    # plain loop (tested); on by default since it measured faster per keystroke (README, Benchmarks).
    fast_decode: bool = True
    # ``draft_tokens`` caps a draft from the previous suggestion being typed through (likely
    # right); ``lookup_tokens`` caps one found by prompt lookup (right far less often). Each
    # drafted row costs compute in the verifying forward: on a 2-core Xeon, 8 and 2 answered a
    # keystroke faster than 8 and 8, 3 or 4 (benchmarks/peer_latency.py, README).
    draft_tokens: int = 8
    lookup_tokens: int = 2


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
    fim_order: FimOrder | None = None  # None: the engine's default
    cache_key: str | None = None  # names a KV slot, e.g. a document URI
    timeout_ms: float | None = None  # deadline for the whole call, queueing included
    token_healing: bool = True
    ignore_eos: bool = False  # benchmarks: decode through end-of-text/FIM tokens (never returned)
    # Stop before the first token that adds text and whose log-probability is below this (the
    # suggestion ends where the model stops being sure); None: no such stop.
    min_token_logprob: float | None = None


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
    context_tokens: int = 0  # prompt tokens of the extra-context block (0: none, or dropped to fit)


@dataclass(frozen=True)
class CompletionResult:
    text: str
    stop_reason: StopReason
    stats: CompletionStats = field(default_factory=CompletionStats)
    # Per generated token: its log-probability under the model's unconstrained distribution, and
    # len(text) once it was added (before any stop cut). A caller that trims the text scores
    # the tokens that produced what it keeps (``confidence``).
    token_logprobs: tuple[float, ...] = ()
    token_text_ends: tuple[int, ...] = ()

    def confidence(self, shown_chars: int) -> tuple[float, float] | None:
        """(mean, minimum) log-probability of the tokens that produced the first ``shown_chars``
        characters of ``text``; ``None`` when no token did (or the engine gave no scores)."""
        used = []
        for logprob, end in zip(self.token_logprobs, self.token_text_ends):
            used.append(logprob)
            if end >= shown_chars:
                break
        if not used or shown_chars <= 0:
            return None
        return sum(used) / len(used), min(used)


@dataclass(frozen=True)
class PromptBudget:
    """How one request shares the model's context (``model_runtime.prompt.prompt_budget``)."""

    max_new_tokens: int  # the cap actually used (clamped to half the context)
    prompt_tokens: int  # extra context + prefix + suffix, FIM sentinels excluded


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

    def prompt_budget(self, max_new_tokens: int) -> PromptBudget:
        """The runtime's split of the context for a request capped at ``max_new_tokens``; the
        server sizes its windows with this, so the two can never disagree."""
        from .prompt import prompt_budget  # torch-free

        return prompt_budget(self.context_tokens, max_new_tokens)


class ModelLoadError(RuntimeError):
    """A model could not be loaded. The message is one line that says what to do."""


class CompletionOOMError(RuntimeError):
    """One completion ran out of memory twice: with its prompt, then with about half of it.

    Only that request failed: the engine holds no lock and no half-written KV afterwards, so
    the next request runs normally. The message is one line that says what to do.
    """


class CompletionServerError(RuntimeError):
    """A remote engine's server failed one request (unreachable, refused, overloaded, broken
    stream). The message is one line that says what to do; the engine has logged it already
    (once for a run of the same problem), so callers need not log it again."""
