"""transformers' forward as a step function, logit constraints and sampling. Batch size is 1."""

from __future__ import annotations

import functools
import inspect
from typing import Sequence

import torch
from transformers import DynamicCache


@functools.lru_cache(maxsize=None)
def _cache_argument_of(model_class: type[torch.nn.Module]) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_argument(model) -> str:
    """The keyword under which ``model.forward`` takes its KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and is to be
    removed in 5.40); the project supports both sides of the rename.
    """
    return _cache_argument_of(type(model))  # type: ignore[arg-type]  # mypy 2.4 finds type[Any] not Hashable


def forward_step(model, ids: torch.Tensor, positions: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """transformers' forward for ``ids`` [T] at ``positions`` [T]; returns the last logits [vocab] (fp32).

    The same call serves a prefill (many ids) and a decode step (one id); ``cache`` grows in
    place. No autograd context here: the caller enters ``inference_mode`` once per run.
    """
    out = model(
        input_ids=ids[None],  # [1, T]
        **{cache_argument(model): cache},
        position_ids=positions[None],  # [1, T]
        use_cache=True,
        logits_to_keep=1,  # only the last position's logits: the vocab projection dominates small models
    )
    return out.logits[0, -1].float()  # [vocab]


@torch.inference_mode()
def forward_tokens(model, token_ids: Sequence[int], cache: DynamicCache, start_position: int) -> torch.Tensor:
    """``forward_step`` from plain ids, under inference mode (tests and tools)."""
    device = model.device
    ids = torch.tensor(list(token_ids), device=device)  # [T]
    positions = torch.arange(start_position, start_position + len(token_ids), device=device)  # [T]
    return forward_step(model, ids, positions, cache)


def constrain(logits: torch.Tensor, allowed: torch.Tensor | None, banned: torch.Tensor | None) -> torch.Tensor:
    """``logits`` [vocab] with every id outside ``allowed`` [k] (or inside ``banned`` [k]) at -inf."""
    if allowed is not None:
        masked = torch.full_like(logits, float("-inf"))  # [vocab]
        return masked.index_copy(0, allowed, logits.index_select(0, allowed))
    if banned is not None:
        return logits.index_fill(0, banned, float("-inf"))
    return logits


def sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """The next id [1] from ``logits`` [vocab], on the device; greedy when ``temperature`` <= 0."""
    if temperature <= 0:
        return torch.argmax(logits).reshape(1)  # [1]
    probs = torch.softmax(logits / temperature, dim=-1)  # [vocab]
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)  # [vocab], [vocab]
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p  # [vocab]
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)  # masked_fill: no host sync
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)  # [1]
