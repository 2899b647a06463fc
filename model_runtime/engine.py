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
from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache

from .api import (
    FIM_ORDERS,
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
)
from .decode import forward_tokens, sample
from .fim import FimTokens, find_fim_tokens
from .kv_cache import KVSlotStore
from .loader import _is_out_of_memory, load_model
from . import static_decode
from .static_decode import StaticGPTBigCode
from .vocabulary import TextStream, TokenTable

log = logging.getLogger(__name__)

_FIM_SENTINELS = 3
_TRUNCATION_STEP_TOKENS = 128
_SMALL_MODEL_PARAMETERS = 50_000_000


@dataclass(frozen=True)
class _Prompt:
    token_ids: list[int]
    allowed_first_ids: torch.Tensor | None  # token healing's constraint on the first new token
    healed_bytes: int
    healed_chars: int
    truncated_tokens: int
    max_new_tokens: int


class _OutOfMemory(Exception):
    """Raised by ``_generate`` in place of an out-of-memory error, with what the log needs.

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


class Engine:
    def __init__(self, model, tokenizer, fim: FimTokens, info: ModelInfo, kv_cache_bytes: int, static_path: bool = True):
        self.model = model
        # We cut prompts to the model's context ourselves; silence the tokenizer's length warning.
        tokenizer.model_max_length = 1 << 62
        # The lean static-KV forward where the model allows it, else transformers' own.
        self.static = StaticGPTBigCode(model) if static_path and static_decode.supports(model) else None
        self.tokenizer = tokenizer
        self.fim = fim
        self.info = info
        self.table = TokenTable(tokenizer, extra_stop_ids=(fim.prefix_id, fim.middle_id, fim.suffix_id))
        self.kv_store = KVSlotStore(kv_cache_bytes)
        self._stop_tensor = torch.tensor(sorted(self.table.stop_ids), device=model.device)
        self._lock = threading.Lock()  # one decode at a time; guards kv_store
        self._tokenizer_lock = threading.Lock()  # count_tokens may run beside a decode

    # -- text <-> tokens -------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Ids of ``text``; special-token strings inside it are spelled out, never made special."""
        if not text:
            return []
        with self._tokenizer_lock:  # the fast tokenizer's state is not safe to share across threads
            return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

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
        order = request.fim_order or self.info.fim_order
        if order not in FIM_ORDERS:
            raise ValueError(f"unknown FIM order {order!r}: use 'psm' or 'spm'")
        if not self._acquire(cancel, deadline_ms):
            reason = StopReason.CANCELLED if cancel is not None and cancel.is_set() else StopReason.DEADLINE
            return CompletionResult("", reason, CompletionStats(queue_ms=_now_ms() - start_ms))
        try:
            queue_ms = _now_ms() - start_ms
            prompt = self._prepare(request, order)
            try:
                return self._generate(request, prompt, stop, cancel, deadline_ms, queue_ms)
            except _OutOfMemory as error:
                # Keep plain values only: leaving this block drops the error and with it the
                # failed attempt's tensors, before the retry needs their memory.
                failed = (error.stage, error.generated_tokens)
            return self._retry_shorter(request, order, prompt, failed, stop, cancel, deadline_ms, queue_ms)
        finally:
            self._lock.release()

    def _retry_shorter(
        self,
        request: CompletionRequest,
        order: str,
        prompt: _Prompt,
        failed: tuple[str, int],
        stop: StopCallback | None,
        cancel: CancelFlag | None,
        deadline_ms: float | None,
        queue_ms: float,
    ) -> CompletionResult:
        """The second and last attempt after running out of memory: about half the prompt's
        text, cut like an over-long prompt (tail of the prefix, head of the suffix), after
        freeing the KV slots. Cancellation and the deadline apply as in the first attempt.
        Raises ``CompletionOOMError`` if this attempt runs out of memory too."""
        (stage, generated_tokens), device = failed, self.info.device
        shorter = self._prepare(request, order, budget_tokens=(len(prompt.token_ids) - _FIM_SENTINELS) // 2)
        before, after = len(prompt.token_ids), len(shorter.token_ids)
        dropped = self._free_memory()
        log.warning(
            "out of memory on %s during %s (%d prompt tokens, %d generated); dropped %d cached sequences, "
            "retrying once with %d prompt tokens (%d truncated)",
            device, stage, before, generated_tokens, dropped, after, shorter.truncated_tokens,
        )  # fmt: skip
        try:
            result = self._generate(request, shorter, stop, cancel, deadline_ms, queue_ms)
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
        if self.model.device.type == "cuda":
            torch.cuda.empty_cache()  # else the freed blocks stay reserved by torch's allocator
        return dropped

    def _acquire(self, cancel: CancelFlag | None, deadline_ms: float | None) -> bool:
        while not self._lock.acquire(timeout=0.005):
            if cancel is not None and cancel.is_set():
                return False
            if deadline_ms is not None and _now_ms() > deadline_ms:
                return False
        return True

    def _prepare(self, request: CompletionRequest, order: str, budget_tokens: int | None = None) -> _Prompt:
        """Tokenize, heal and cut the request to fit the context, or ``budget_tokens`` of prefix
        and suffix when given (the shorter retry after running out of memory)."""
        context = self.info.context_tokens
        max_new = max(1, min(request.max_new_tokens, context // 2))
        prefix_ids, suffix_ids = self.tokenize(request.prefix), self.tokenize(request.suffix)
        allowed, healed = None, b""
        if request.token_healing and prefix_ids:
            # The prefix may end inside a token (`wo` of `world`): back off that token and let
            # the model pick any token that starts with its bytes.
            # Whitespace-only tokens (indentation) are left alone: "extending" them only lets
            # the model pick a deeper indent than the one the user typed.
            removed = self.table.bytes_of[prefix_ids[-1]]
            candidates = self.table.ids_starting_with(removed) if removed.strip() else []
            if len(candidates) > 1:
                prefix_ids, healed = prefix_ids[:-1], removed
                allowed = torch.tensor(candidates, device=self.model.device)
        budget, step = context - max_new - _FIM_SENTINELS, _TRUNCATION_STEP_TOKENS
        if budget_tokens is not None and budget_tokens < budget:
            # Finer steps for a small budget: 128-token steps would swallow a short prefix whole.
            budget = max(0, budget_tokens)
            step = max(1, min(step, budget // 4))
        truncated = 0
        if len(prefix_ids) + len(suffix_ids) > budget:
            # Keep the text nearest the cursor. The prefix's head is dropped in coarse steps so
            # that, while the user types, the kept prompt stays the same and its KV reusable.
            keep_suffix = min(len(suffix_ids), max(budget - len(prefix_ids), budget // 4))
            drop = len(prefix_ids) - (budget - keep_suffix)
            drop = min(len(prefix_ids), -(-drop // step) * step)
            truncated = drop + len(suffix_ids) - keep_suffix
            prefix_ids, suffix_ids = prefix_ids[drop:], suffix_ids[:keep_suffix]
        return _Prompt(
            token_ids=self.fim.layout(prefix_ids, suffix_ids, order),
            allowed_first_ids=allowed,
            healed_bytes=len(healed),
            healed_chars=len(healed.decode("utf-8", errors="replace")),
            truncated_tokens=truncated,
            max_new_tokens=max_new,
        )

    def _generate(
        self,
        request: CompletionRequest,
        prompt: _Prompt,
        stop: StopCallback | None,
        cancel: CancelFlag | None,
        deadline_ms: float | None,
        queue_ms: float,
    ) -> CompletionResult:
        stats = CompletionStats(
            prompt_tokens=len(prompt.token_ids),
            queue_ms=queue_ms,
            healed_chars=prompt.healed_chars,
            truncated_tokens=prompt.truncated_tokens,
        )

        def interrupted() -> StopReason | None:
            if cancel is not None and cancel.is_set():
                return StopReason.CANCELLED
            if deadline_ms is not None and _now_ms() > deadline_ms:
                return StopReason.DEADLINE
            return None

        reason = interrupted()
        if reason is not None:
            return CompletionResult("", reason, stats)
        stream = TextStream(self.table, skip_bytes=prompt.healed_bytes)
        generator = None
        if request.temperature > 0 and request.seed is not None:
            generator = torch.Generator(device=self.model.device).manual_seed(request.seed)
        cache, fed, generated, stage = None, [], 0, "prefill"  # fed: ids whose KV the cache holds
        try:
            # Inside the try: a new full-context KV buffer or a copied slot can run out of memory too.
            cache, reused = self.kv_store.take(request.cache_key, prompt.token_ids)
            if cache is None:
                cache = self.static.new_cache() if self.static else DynamicCache()
            fed = list(prompt.token_ids[:reused])
            t0 = _now_ms()
            logits = self._forward(prompt.token_ids[reused:], cache, reused)  # [vocab]
            fed = list(prompt.token_ids)
            t1 = _now_ms()
            stats = replace(stats, reused_tokens=reused, prefilled_tokens=len(prompt.token_ids) - reused, prefill_ms=t1 - t0)
            stage = "decode"
            allowed = prompt.allowed_first_ids
            text, reason = "", None
            while reason is None:
                logits = logits[: self.table.size]  # drop the model's padding ids
                if request.ignore_eos:
                    logits = logits.index_fill(0, self._stop_tensor, float("-inf"))
                token = sample(logits, request.temperature, request.top_p, generator, allowed)
                allowed = None
                if token in self.table.stop_ids:
                    reason = StopReason.EOS
                    break
                generated += 1
                text = stream.push(token)
                text, reason = self._check_stops(text, request.stop_sequences, stop)
                if reason is None and generated >= prompt.max_new_tokens:
                    reason = StopReason.MAX_TOKENS
                if reason is None and len(fed) >= self.info.context_tokens:
                    reason = StopReason.CONTEXT_FULL
                reason = reason or interrupted()
                if reason is None:
                    logits = self._forward([token], cache, len(fed))
                    fed.append(token)
            stats = replace(stats, generated_tokens=generated, decode_ms=_now_ms() - t1)
        except BaseException as error:
            cache = None  # possibly half-updated: never store it
            if _is_out_of_memory(error):
                raise _OutOfMemory(stage, generated, error) from error
            raise
        finally:
            if cache is not None and cache.get_seq_length() == len(fed):
                self.kv_store.put(request.cache_key, fed, cache)
        return CompletionResult(text, reason, stats)

    def _forward(self, token_ids, cache, start_position: int) -> torch.Tensor:
        if self.static is not None:
            return self.static.forward(token_ids, cache, start_position)
        return forward_tokens(self.model, token_ids, cache, start_position)

    @staticmethod
    def _check_stops(text: str, sequences: tuple[str, ...], stop: StopCallback | None) -> tuple[str, StopReason | None]:
        cuts = [index for index in (text.find(s) for s in sequences if s) if index >= 0]
        if cuts:
            return text[: min(cuts)], StopReason.STOP_SEQUENCE
        if stop is not None:
            cut = stop(text)
            if cut is not None:
                return text[:cut], StopReason.CALLBACK
        return text, None

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
    if options.fim_order not in FIM_ORDERS:
        raise ModelLoadError(f"unknown FIM order {options.fim_order!r}: choose 'psm' or 'spm'")
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
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048)
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
    engine = Engine(model, tokenizer, fim, info, options.kv_cache_bytes, static_path=options.static_decode)
    if progress:
        progress("warming up", 0.9)
    engine.warm_up()
    if progress:
        progress("ready", 1.0)
    log.info("loaded %s (%s) on %s, %s, %.1fM parameters", options.model, source.kind, device, info.dtype, info.parameters / 1e6)
    return engine
