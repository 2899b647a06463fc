"""The model calls of one completion: prefill, one decode step, sampling. Batch size is 1."""

from __future__ import annotations

import functools
import inspect
from typing import Sequence

import torch
from transformers import DynamicCache


@functools.lru_cache(maxsize=None)
def _cache_argument_of(model_class: type) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_argument(model) -> str:
    """The keyword under which ``model.forward`` takes its KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and is to be
    removed in 5.40); the project supports both sides of the rename.
    """
    return _cache_argument_of(type(model))


@torch.inference_mode()
def forward_tokens(model, token_ids: Sequence[int], cache: DynamicCache, start_position: int) -> torch.Tensor:
    """Run ``token_ids`` after ``start_position`` cached positions; return the last logits [vocab].

    Used both for prefill (many ids) and for one decode step (one id); ``cache`` grows in place.
    """
    device = model.device
    input_ids = torch.tensor([list(token_ids)], device=device)  # [1, T]
    positions = torch.arange(start_position, start_position + len(token_ids), device=device)  # [T]
    out = model(
        input_ids=input_ids,
        **{cache_argument(model): cache},
        position_ids=positions.unsqueeze(0),  # [1, T]
        use_cache=True,
        logits_to_keep=1,  # only the last position's logits: the vocab projection dominates small models
    )
    return out.logits[0, -1].float()  # [vocab]


def sample(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    allowed_ids: torch.Tensor | None = None,
) -> int:
    """Pick the next id from ``logits`` [vocab]; greedy when ``temperature`` <= 0.

    ``allowed_ids`` [k] restricts the choice (token healing's constrained first step).
    """
    if allowed_ids is not None:
        masked = torch.full_like(logits, float("-inf"))
        masked[allowed_ids] = logits[allowed_ids]
        logits = masked
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)  # [vocab]
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)  # [vocab], [vocab]
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
