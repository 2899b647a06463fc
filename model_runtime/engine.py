"""The engine: FIM prompt -> reused KV -> prefill of the new tokens -> decode with early stops.

Contract of ``Engine.complete``: blocking and thread-safe. One decode runs at a time (the
engine's lock); other callers wait, and a caller whose cancel flag is set or whose deadline
passes while it waits returns at once. The KV slot store is touched only under that lock.
``tokenize``/``count_tokens`` may be called from any thread, also while a decode runs.

Out of memory during a completion: the engine drops its KV slots, frees what the device caches
and retries that request once with about half the prompt; if that runs out too, the request
raises ``CompletionOOMError`` and the engine stays usable for the next one.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from transformers import DynamicCache

from . import static_decode
from .api import (
    CancelFlag,
    CompletionOOMError,
    CompletionRequest,
    CompletionResult,
    CompletionStats,
    LoadOptions,
    ModelInfo,
    ModelLoadError,
    ProgressCallback,
    StopCallback,
    StopReason,
    check_fim_order,
)
from .decode import constrain, forward_step, sample
from .fast_decode import GreedyDecoder
from .fim import FimTokens, find_fim_tokens
from .kv_cache import KVSlotStore
from .loader import _is_out_of_memory, load_model
from .prompt import FIM_SENTINEL_TOKENS, HealingGuide, Prompt, PromptBuilder
from .speculation import continuation
from .static_decode import StaticGPTBigCode
from .token_cache import CachedTokenizer, split_is_exact
from .vocabulary import TextStream, TokenTable

log = logging.getLogger(__name__)

_SMALL_MODEL_PARAMETERS = 50_000_000
# Uncached prompt tails up to this long run in the fast step's first forward, beside its drafts;
# longer ones take the static prefill (one logits row, the causal kernel, no per-head mask).
MERGED_PREFILL_TOKENS = 64


class _OutOfMemory(Exception):
    """Raised by ``_run`` in place of an out-of-memory error, with what the log needs.

    Only plain values: ``complete`` must be able to drop the original error (whose traceback
    pins the failed attempt's tensors) before it retries.
    """

    def __init__(self, stage: str, generated_tokens: int, error: BaseException):
        super().__init__(stage)
        self.stage = stage  # "prefill" or "decode"
        self.generated_tokens = generated_tokens
        lines = str(error).strip().splitlines()
        self.reason = lines[0][:160] if lines else type(error).__name__


def _now_ms() -> float:
    return time.perf_counter() * 1000.0


@dataclass
class _Run:
    """One attempt at a request: what may stop it, what it produced so far, its figures.

    ``push`` takes each generated token; it decides the stop (stop callback, cap, context) and
    ``interrupted`` the cancel flag and the deadline, so the decode loop itself only calls the
    model. Plain Python values only: nothing here pins device memory."""

    request: CompletionRequest
    prompt: Prompt
    stop: StopCallback | None
    cancel: CancelFlag | None
    deadline_ms: float | None
    queue_ms: float
    context_tokens: int
    stream: TextStream
    healing: HealingGuide
    text: str = ""
    reason: StopReason | None = None
    ids: list[int] = field(default_factory=list)  # generated (non-special) tokens
    fed: int = 0  # prompt and generated tokens whose KV the cache holds
    logprobs: list[float] = field(default_factory=list)  # per generated token, unconstrained distribution
    text_ends: list[int] = field(default_factory=list)  # len(text) after each generated token
    healing_tokens: int = 0  # generated while the healed bytes were being re-produced
    stage: str = "prefill"
    prefill_ms: float = 0.0
    reused_tokens: int = 0

    def interrupted(self) -> StopReason | None:
        if self.cancel is not None and self.cancel.is_set():
            return StopReason.CANCELLED
        if self.deadline_ms is not None and _now_ms() > self.deadline_ms:
            return StopReason.DEADLINE
        return None

    def push(self, token: int, logprob: float) -> None:
        """Record a generated (non-special) token; sets ``reason`` when decoding must end.

        Tokens spent re-producing healed bytes do not count against the cap: with a small
        vocabulary, healed indentation can take several tokens."""
        healing = not self.healing.done
        self.healing.advance(token)
        self.ids.append(token)
        self.logprobs.append(logprob)
        shown = len(self.text)
        text = self.stream.push(token)
        if healing and not text:
            self.healing_tokens += 1
        floor = self.request.min_token_logprob
        if floor is not None and logprob < floor and len(text) > shown:
            text, self.reason = text[:shown], StopReason.LOW_CONFIDENCE
        elif self.stop is not None:
            cut = self.stop(text)
            if cut is not None:
                text, self.reason = text[:cut], StopReason.CALLBACK
        self.text = text
        self.text_ends.append(len(text))
        if self.reason is None and len(self.ids) - self.healing_tokens >= self.prompt.max_new_tokens:
            self.reason = StopReason.MAX_TOKENS
        if self.reason is None and self.fed >= self.context_tokens:
            self.reason = StopReason.CONTEXT_FULL
        self.reason = self.reason or self.interrupted()

    def cached_ids(self) -> list[int]:
        """The tokens whose KV the cache holds: the prompt, then the generated ones fed back."""
        prompt = self.prompt.token_ids
        return list(prompt) + self.ids[: self.fed - len(prompt)]

    def result(self, decode_ms: float) -> CompletionResult:
        stats = CompletionStats(
            prompt_tokens=len(self.prompt.token_ids),
            reused_tokens=self.reused_tokens,
            prefilled_tokens=len(self.prompt.token_ids) - self.reused_tokens if self.stage != "prefill" else 0,
            generated_tokens=len(self.ids),
            queue_ms=self.queue_ms,
            prefill_ms=self.prefill_ms,
            decode_ms=decode_ms,
            healed_chars=self.prompt.healed_chars,
            truncated_tokens=self.prompt.truncated_tokens,
            context_tokens=self.prompt.context_tokens,
        )
        reason = self.reason or StopReason.EOS
        return CompletionResult(self.text, reason, stats, tuple(self.logprobs), tuple(self.text_ends))


class Engine:
    def __init__(
        self, model, tokenizer, fim: FimTokens, info: ModelInfo, kv_cache_bytes: int, static_path: bool = True,
        fast_decode: bool = True, draft_tokens: int = 8, lookup_tokens: int = 2,
    ):  # fmt: skip
        self.model = model
        self.device = model.device
        # We cut prompts to the model's context ourselves; silence the tokenizer's length warning.
        tokenizer.model_max_length = 1 << 62
        # The lean static-KV forward where the model allows it, else transformers' own.
        self.static = StaticGPTBigCode(model) if static_path and static_decode.supports(model) else None
        self.tokenizer = tokenizer
        # Per keystroke only the prefix's last line is new: tokenize that, reuse the rest.
        self._cached_tokenize = CachedTokenizer(self._encode, split=split_is_exact(tokenizer, self._encode))
        self.fim = fim
        self.info = info
        self.table = TokenTable(tokenizer, extra_stop_ids=(fim.prefix_id, fim.middle_id, fim.suffix_id))
        self.prompts = PromptBuilder(self.tokenize, self.table, fim, info)
        self.kv_store = KVSlotStore(kv_cache_bytes)
        # Greedy decoding's fixed-shape step with prompt-lookup speculation; None: the plain loop.
        # Quantized layers are left to the plain loop: the step would work, but is not measured.
        self.fast = None
        if fast_decode and self.static is not None and info.quantization == "none":
            self.fast = GreedyDecoder(self.static, self.table.size, sorted(self.table.stop_ids), draft_tokens=max(0, draft_tokens), lookup_tokens=max(0, lookup_tokens))
        self._stop_tensor = torch.tensor(sorted(self.table.stop_ids), device=self.device)
        self._lock = threading.Lock()  # one decode at a time; guards kv_store
        self._tokenizer_lock = threading.Lock()  # count_tokens may run beside a decode

    # -- text <-> tokens -------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Ids of ``text``; special-token strings inside it are spelled out, never made special."""
        if not text:
            return []
        with self._tokenizer_lock:  # the fast tokenizer's state (and the cache) is not safe to share across threads
            return self._cached_tokenize(text)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        """Not through the keystroke cache: callers count many short lines and keep their own."""
        if not text:
            return 0
        with self._tokenizer_lock:
            return len(self._encode(text))

    # -- one completion --------------------------------------------------------------------
    def complete(
        self,
        request: CompletionRequest,
        *,
        stop: StopCallback | None = None,
        cancel: CancelFlag | None = None,
    ) -> CompletionResult:
        start_ms = _now_ms()
        deadline_ms = start_ms + request.timeout_ms if request.timeout_ms is not None else None
        order = check_fim_order(request.fim_order or self.info.fim_order)
        if not self._acquire(cancel, deadline_ms):
            reason = StopReason.CANCELLED if cancel is not None and cancel.is_set() else StopReason.DEADLINE
            return CompletionResult("", reason, CompletionStats(queue_ms=_now_ms() - start_ms))
        try:
            queue_ms = _now_ms() - start_ms

            def attempt(prompt: Prompt) -> CompletionResult:
                return self._run(_Run(request, prompt, stop, cancel, deadline_ms, queue_ms, self.info.context_tokens,
                                      TextStream(self.table, skip_bytes=len(prompt.healed)), HealingGuide(self.table, prompt.healed)))  # fmt: skip

            prompt = self.prompts.build(request, order)
            try:
                return attempt(prompt)
            except _OutOfMemory as error:
                # Keep plain values only: leaving this block drops the error and with it the
                # failed attempt's tensors, before the retry needs their memory.
                failed = (error.stage, error.generated_tokens)
            shorter = self.prompts.build(request, order, budget_tokens=(len(prompt.token_ids) - FIM_SENTINEL_TOKENS) // 2)
            return self._retry_shorter(attempt, prompt, shorter, failed)
        finally:
            self._lock.release()

    def _retry_shorter(self, attempt, prompt: Prompt, shorter: Prompt, failed: tuple[str, int]) -> CompletionResult:
        """The second and last attempt after running out of memory: about half the prompt's
        text, cut like an over-long prompt (tail of the prefix, head of the suffix), after
        freeing the KV slots. Cancellation and the deadline apply as in the first attempt.
        Raises ``CompletionOOMError`` if this attempt runs out of memory too."""
        (stage, generated_tokens), device = failed, self.info.device
        before, after = len(prompt.token_ids), len(shorter.token_ids)
        dropped = self._free_memory()
        log.warning(
            "out of memory on %s during %s (%d prompt tokens, %d generated); dropped %d cached sequences, "
            "retrying once with %d prompt tokens (%d truncated)",
            device, stage, before, generated_tokens, dropped, after, shorter.truncated_tokens,
        )  # fmt: skip
        try:
            result = attempt(shorter)
        except _OutOfMemory as error:
            reason = error.reason
        else:
            return replace(result, stats=replace(result.stats, oom_retries=1))
        self._free_memory()
        # ``from None``: a chained traceback would pin this attempt's tensors for as long as the
        # caller keeps the error; the reason is in the message instead.
        raise CompletionOOMError(
            f"out of memory on {device} with {before} and again with {after} prompt tokens ({reason}): free memory used by "
            "other programs, lower the KV cache budget, or load with quantization 'nf4' or 'int8'"
        ) from None

    def _free_memory(self) -> int:
        """Drop every KV slot and give freed blocks back to the device; return how many were dropped.

        The failed request's own slot is gone already (``take`` hands it over and a failed
        decode never puts it back); the other slots go too, as the KV caches are the only
        memory the engine holds beyond the weights. Caller holds the engine's lock.
        """
        dropped = len(self.kv_store)
        self.kv_store.clear()
        gc.collect()  # a failed attempt's frames may sit in reference cycles, pinning tensors
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # else the freed blocks stay reserved by torch's allocator
        return dropped

    def _acquire(self, cancel: CancelFlag | None, deadline_ms: float | None) -> bool:
        while not self._lock.acquire(timeout=0.005):
            if cancel is not None and cancel.is_set():
                return False
            if deadline_ms is not None and _now_ms() > deadline_ms:
                return False
        return True

    # -- the decode loop (gpt-fast's shape) ----------------------------------------------------
    def prefill(self, cache, token_ids: Sequence[int], start: int) -> torch.Tensor:
        """Run the uncached prompt tokens; the logits [vocab] of the last one."""
        ids = torch.tensor(list(token_ids), device=self.device)  # [T]
        positions = torch.arange(start, start + len(token_ids), device=self.device)  # [T]
        return self._step(ids, positions, cache)

    def decode_one_token(self, cache, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One step: ``token`` [1] at ``position`` [1], both on the device; the next logits [vocab]."""
        return self._step(token, position, cache)

    def _step(self, ids: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        if self.static is not None:
            return self.static.forward(ids, positions, cache)
        return forward_step(self.model, ids, positions, cache)

    def _next_token(self, logits: torch.Tensor, run: _Run, generator: torch.Generator | None) -> tuple[torch.Tensor, int, float]:
        """(the chosen id [1] on the device, the same as an int, its log-probability under the
        unconstrained distribution). One host sync: the id and its log-probability together."""
        logits = logits[: self.table.size]  # [vocab]: drop the model's padding ids
        if run.request.ignore_eos:
            logits = logits.index_fill(0, self._stop_tensor, float("-inf"))
        allowed, banned = run.healing.constraint()
        as_tensor = lambda ids: torch.tensor(ids, dtype=torch.long, device=self.device) if ids else None  # noqa: E731
        chosen = constrain(logits, as_tensor(allowed), as_tensor(banned))
        token = sample(chosen, run.request.temperature, run.request.top_p, generator)  # [1]
        logprob = torch.log_softmax(logits, dim=-1).gather(0, token)  # [1]
        token_id, value = torch.cat([token.to(logprob.dtype), logprob]).tolist()
        return token, int(token_id), value

    def _run(self, run: _Run) -> CompletionResult:
        request, prompt = run.request, run.prompt
        run.reason = run.interrupted()
        if run.reason is not None:
            return run.result(0.0)
        generator = None
        if request.temperature > 0 and request.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(request.seed)
        cache, t1 = None, _now_ms()
        try:
            with torch.inference_mode():
                # Inside the try: a new full-context KV buffer or a copied slot can run out of memory too.
                previous = self.kv_store.token_ids(request.cache_key) if self.fast is not None else []
                cache, run.reused_tokens = self.kv_store.take(request.cache_key, prompt.token_ids)
                if cache is None:
                    cache = self.static.new_cache() if self.static else DynamicCache()
                run.fed = run.reused_tokens
                t0 = _now_ms()
                uncached = prompt.token_ids[run.reused_tokens :]
                if self._fast_applies(run) and len(uncached) <= MERGED_PREFILL_TOKENS:
                    # The prompt's short uncached tail and the first drafts in one forward.
                    self._decode_fast(run, cache, uncached, previous[run.reused_tokens :], t0)
                    t1 = t0 + run.prefill_ms
                    logits = None
                else:
                    logits = self.prefill(cache, uncached, run.reused_tokens)  # [vocab]
                    run.fed, run.stage = len(prompt.token_ids), "decode"
                    t1 = _now_ms()
                    run.prefill_ms = t1 - t0
                position = torch.tensor([run.fed], device=self.device)  # [1]
                while run.reason is None:
                    token, token_id, logprob = self._next_token(logits, run, generator)
                    if token_id in self.table.stop_ids:
                        run.reason = StopReason.EOS
                        break
                    run.push(token_id, logprob)
                    if run.reason is None and self._fast_applies(run):
                        # What this document's cache held beyond the reused part (mostly the
                        # previous suggestion) is the likeliest draft while the user types it.
                        self._decode_fast(run, cache, [token_id], previous[run.reused_tokens :])
                        break
                    if run.reason is None:
                        logits = self.decode_one_token(cache, token, position)
                        run.fed += 1
                        position += 1
        except BaseException as error:
            cache = None  # possibly half-updated: never store it
            if _is_out_of_memory(error):
                raise _OutOfMemory(run.stage, len(run.ids), error) from error
            raise
        finally:
            if cache is not None and cache.get_seq_length() == run.fed:
                self.kv_store.put(request.cache_key, run.cached_ids(), cache)
        return run.result(_now_ms() - t1)

    def _fast_applies(self, run: _Run) -> bool:
        """Whether the next tokens may come from the fixed-shape greedy step: greedy decoding
        with no healing constraint left (constrained tokens take the plain loop)."""
        return self.fast is not None and run.request.temperature <= 0 and run.healing.done

    def _decode_fast(self, run: _Run, cache, pending: Sequence[int], extra: Sequence[int], prefill_start_ms: float | None = None) -> None:
        """Greedy decoding through the fixed-shape step after ``pending``, the ids that follow
        what the cache holds: the last token pushed (not yet fed), or the prompt's uncached
        tail while ``run.stage`` is "prefill" (then the first token yielded ends the prefill,
        whose time counts from ``prefill_start_ms``).

        The decoder keeps ``history`` equal to what the cache holds at every token it yields, so
        stopping anywhere (stop rules, cancellation, deadline) leaves a cache that can be stored."""
        assert self.fast is not None  # only called when the engine has the fast decoder
        history = run.cached_ids() if run.stage == "decode" else list(run.prompt.token_ids[: run.fed])
        # Typing through the previous suggestion: its rest is the first draft.
        fed = (history + list(pending))[run.reused_tokens :]
        first_draft = continuation(extra, fed, self.table.bytes_of, self.table.id_of_bytes, self.fast.draft_tokens)
        tokens = self.fast.tokens(cache, history, pending, ban_stops=run.request.ignore_eos, extra=extra, first_draft=first_draft)
        for token_id, logprob in tokens:
            run.fed = len(history)
            if run.stage == "prefill":
                assert prefill_start_ms is not None  # given whenever the stage is "prefill"
                run.stage, run.prefill_ms = "decode", _now_ms() - prefill_start_ms
            if token_id in self.table.stop_ids:
                run.reason = StopReason.EOS
                return
            run.push(token_id, logprob)
            if run.reason is not None:
                return
        run.fed = len(history)
        run.reason = run.reason or StopReason.CONTEXT_FULL

    def warm_up(self) -> None:
        """One tiny completion, so the first real request does not pay for lazy initialisation."""
        self.complete(CompletionRequest(prefix="\n", suffix="\n", max_new_tokens=2, token_healing=False))
        self.kv_store.clear()

    def close(self) -> None:
        with self._lock:
            self.kv_store.clear()


def choose_threads(requested: int) -> int:
    """Torch intra-op threads to set: ``requested`` if positive, else 0 (decide after loading)."""
    if requested < 0:
        raise ModelLoadError(f"threads must be 0 (automatic) or more, not {requested}")
    return requested


def load_engine(options: LoadOptions = LoadOptions(), progress: ProgressCallback | None = None) -> Engine:
    """Load a model and return a ready engine. Raises ``ModelLoadError`` with an actionable line."""
    try:
        check_fim_order(options.fim_order)
    except ValueError as error:
        raise ModelLoadError(str(error)) from None
    if options.kv_cache_bytes < 0:
        raise ModelLoadError("kv_cache_bytes must be zero or more")
    threads = choose_threads(options.threads)
    if threads:
        torch.set_num_threads(threads)
    model, tokenizer, device, dtype, source = load_model(options, progress)
    if options.threads == 0 and device == "cpu" and model.num_parameters() < _SMALL_MODEL_PARAMETERS:
        # A small model gains little from more threads, and on a busy machine OpenMP threads
        # waiting on each other made decoding 20x slower than one thread (measured here).
        torch.set_num_threads(1)
    fim = find_fim_tokens(tokenizer.get_vocab(), options.fim_tokens)
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
    info = ModelInfo(
        name=options.model,
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        quantization=options.quantization,
        context_tokens=int(context),
        fim_order=options.fim_order,
        fim_tokens=fim.names,
        parameters=model.num_parameters(),
    )
    engine = Engine(
        model, tokenizer, fim, info, options.kv_cache_bytes, static_path=options.static_decode,
        fast_decode=options.fast_decode, draft_tokens=options.draft_tokens, lookup_tokens=options.lookup_tokens,
    )  # fmt: skip
    if progress:
        progress("warming up", 0.9)
    engine.warm_up()
    if progress:
        progress("ready", 1.0)
    log.info("loaded %s (%s) on %s, %s, %.1fM parameters", options.model, source.kind, device, info.dtype, info.parameters / 1e6)
    return engine
