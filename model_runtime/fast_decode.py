"""A fixed-shape greedy decode step over ``StaticKV`` buffers, and the loop that drives it.

The step (``FixedShapeForward``) takes its tokens and positions as device tensors, writes their
keys/values in place into the cache's fixed buffers, attends over a fixed window of the buffer
with the positions past each query masked, and picks the greedy token on the device. Nothing in
it depends on a Python int that changes per token except the window, which moves in coarse
buckets, so the same code can be compiled (inductor) or captured (CUDA graph) once per bucket.

``GreedyDecoder.tokens`` is the decode loop: it yields the greedy continuation one host int at a
time. With ``draft_tokens > 0`` it drafts by prompt lookup (``speculation.draft``) and verifies
a whole draft in one forward, keeping the longest run the model agrees with; the tokens it yields
are the same as one-at-a-time greedy decoding (tested). The caller checks its stops between
yields and simply stops iterating; the cache then holds exactly the ids in ``history``.
"""

from __future__ import annotations

import functools
import logging
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .speculation import draft
from .static_decode import StaticGPTBigCode, StaticKV

log = logging.getLogger(__name__)

WINDOW_BUCKET_TOKENS = 256  # attention windows are multiples of this (one compiled graph each)


def window_for(end_position: int, capacity: int) -> int:
    """The attention window covering positions [0, end_position): the next bucket, capped."""
    return min(capacity, -(-end_position // WINDOW_BUCKET_TOKENS) * WINDOW_BUCKET_TOKENS)


def _linear(module: nn.Module):
    """``module`` as a plain function: ``F.linear`` over its tensors for an ``nn.Linear``
    (no module call per token), the module itself for anything else (e.g. quantized layers)."""
    if type(module) is nn.Linear:
        return functools.partial(F.linear, weight=module.weight, bias=module.bias)
    return module


def _layer_norm(module: nn.Module):
    if type(module) is nn.LayerNorm:
        return functools.partial(F.layer_norm, normalized_shape=module.normalized_shape, weight=module.weight, bias=module.bias, eps=module.eps)
    return module


def _activation(module: nn.Module):
    """The function inside ``transformers``' activation module when it keeps one (``act``), so
    the step calls e.g. ``F.gelu(approximate="tanh")`` directly; else the module."""
    inner = getattr(module, "act", None)
    return inner if callable(inner) and not isinstance(inner, nn.Module) else module


class _Block:
    """One transformer block's functions, looked up once instead of through modules per token.
    Dropout is left out: this step is for inference (the model is in eval mode)."""

    def __init__(self, block: nn.Module):
        self.ln_1, self.ln_2 = _layer_norm(block.ln_1), _layer_norm(block.ln_2)
        self.c_attn, self.attn_proj = _linear(block.attn.c_attn), _linear(block.attn.c_proj)
        self.c_fc, self.mlp_proj = _linear(block.mlp.c_fc), _linear(block.mlp.c_proj)
        self.act = _activation(block.mlp.act)


class FixedShapeForward:
    """``forward(ids [T], positions [T], keys, values, window) -> greedy ids [T]`` on the device.

    Greedy over the first ``vocab_size`` logits plus ``bias`` (-inf on ids that must not be
    picked: the model's padding rows, and the stop ids when a caller ignores end-of-text; None:
    nothing banned). ``logits`` is the same forward returning the fp32 logits [T - skip,
    vocab_size] instead (tests); ``skip`` leaves out the first rows (a prompt delta fed in the
    same forward needs only its last row).

    ``window`` is how many buffer positions attention reads: a bucket (``window_for``) gives the
    compiled or captured step one shape per bucket; the end position (eager decoding) reads only
    what is held. ``exact``: the window ends right after the last position fed, so a single
    token sees all of it and needs no mask.
    """

    def __init__(self, static: StaticGPTBigCode, vocab_size: int):
        self.static = static
        self.vocab_size = vocab_size
        self.blocks = [_Block(block) for block in static.blocks]
        self.wte, self.wpe = static.wte.weight, static.wpe.weight
        self.ln_f, self.lm_head = _layer_norm(static.ln_f), _linear(static.lm_head)

    def logits(self, ids, positions, keys, values, window: int, skip: int = 0, exact: bool = False) -> torch.Tensor:
        s = self.static
        count = ids.shape[0]
        hidden = F.embedding(ids, self.wte) + F.embedding(positions, self.wpe)  # [T, E]
        manual = ids.device.type == "cpu" and keys.dtype == torch.float32  # small matmuls beat SDPA's kernel on a CPU (1.3-1.7x per call measured)
        if count == 1 and exact:
            visible = None  # one query at the end of the window: it sees every position
        else:
            # Query t sees buffer positions <= positions[t]; one row per (token, head), token-major.
            visible = torch.arange(window, device=ids.device)[None, :] <= positions[:, None]  # [T, W]
            visible = visible.repeat_interleave(s.heads, dim=0) if count > 1 else visible  # [T*H, W] or [1, W]
            if manual:  # as an additive mask: 0 where seen, -inf elsewhere
                visible = torch.zeros(visible.shape, device=ids.device).masked_fill_(~visible, float("-inf"))
        split = (s.embed_dim, s.head_dim, s.head_dim)
        for layer, block in enumerate(self.blocks):
            query, key, value = block.c_attn(block.ln_1(hidden)).split(split, dim=-1)  # [T, E], [T, D], [T, D]
            keys[layer].index_copy_(0, positions, key)  # key: [T, D] into [capacity, D]
            values[layer].index_copy_(0, positions, value)
            if manual:
                rows = query.reshape(count * s.heads, s.head_dim)  # [T*H, D]: heads folded into rows, one K/V head for all
                scores = torch.mm(rows, keys[layer, :window].t()).mul_(s.scaling)  # [T*H, W]
                if visible is not None:
                    scores.add_(visible)
                out = torch.mm(torch.softmax(scores, dim=-1), values[layer, :window])  # [T*H, D]
            else:
                rows = query.reshape(1, 1, count * s.heads, s.head_dim)  # [1, 1, T*H, D]: heads folded into rows
                seen_keys = keys[layer, :window][None, None]  # [1, 1, W, D]: one K/V head for all heads
                seen_values = values[layer, :window][None, None]  # [1, 1, W, D]
                out = F.scaled_dot_product_attention(rows, seen_keys, seen_values, attn_mask=visible, scale=s.scaling)  # [1, 1, T*H, D]
            hidden = hidden + block.attn_proj(out.reshape(count, s.embed_dim))  # [T, E]
            hidden = hidden + block.mlp_proj(block.act(block.c_fc(block.ln_2(hidden))))  # [T, E]
        if skip:
            hidden = hidden[skip:]
        return self.lm_head(self.ln_f(hidden))[:, : self.vocab_size].float()  # [T - skip, V]

    def greedy(self, ids, positions, keys, values, bias, window: int, skip: int = 0, exact: bool = False) -> torch.Tensor:
        """[2, T - skip]: the greedy ids (as floats) and their log-probabilities, in one tensor so
        the host reads both with one sync. The log-probability is over the biased logits, as the
        engine's ``_next_token`` reports it."""
        logits = self.logits(ids, positions, keys, values, window, skip, exact)  # [T - skip, V]
        if bias is not None:
            logits = logits + bias
        chosen = logits.argmax(dim=-1)  # [T - skip]
        logprobs = torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None])[:, 0]  # [T - skip]
        return torch.stack([chosen.to(logprobs.dtype), logprobs])  # [2, T - skip]


class GreedyDecoder:
    """Greedy decoding through ``FixedShapeForward``, optionally compiled, optionally speculative.

    ``compile_step``: wrap the step in ``torch.compile`` (inductor, static shapes, one graph per
    window bucket and draft length). ``draft_tokens``: the most draft ids verified per forward
    (0: one token per forward), the whole of it for ``first_draft``; ``lookup_tokens``: the most
    for a draft found by prompt lookup (default and at most ``draft_tokens``).
    """

    def __init__(
        self, static: StaticGPTBigCode, vocab_size: int, stop_ids: Sequence[int], *, draft_tokens: int = 0, lookup_tokens: int | None = None,
        compile_step: bool = False,
    ):  # fmt: skip
        self.static = static
        self.forward = FixedShapeForward(static, vocab_size)
        self.draft_tokens = draft_tokens
        self.lookup_tokens = draft_tokens if lookup_tokens is None else min(lookup_tokens, draft_tokens)
        device = static.device
        self._no_stops = torch.zeros(vocab_size, device=device).index_fill_(0, torch.tensor(sorted(stop_ids), device=device), float("-inf"))  # [V]
        self._greedy = self.forward.greedy
        # Compiled: attention windows in buckets (one graph each). Eager: exactly what is held.
        self.bucketed = compile_step
        if compile_step:
            self._greedy = torch.compile(self.forward.greedy, fullgraph=True, dynamic=False)
        self.stats_forwards = 0  # forwards run by the last ``tokens`` call
        self.stats_drafted = 0  # draft tokens proposed by the last call
        self.stats_accepted = 0  # of which the model agreed with

    def tokens(
        self, cache: StaticKV, history: list[int], pending: int | Sequence[int], ban_stops: bool = False, extra: Sequence[int] = (),
        first_draft: Sequence[int] = (),
    ) -> Iterator[tuple[int, float]]:  # fmt: skip
        """Yield (id, log-probability) of the greedy tokens that follow ``pending`` (not yielded).

        ``history``: the ids whose KV ``cache`` holds (``cache.length == len(history)``),
        prompt first; the lookup drafts from it. ``pending``: ids that follow ``history`` and
        are not in the cache yet: the token the caller picked from the prompt's logits, or the
        prompt's uncached tail (then the first yielded id is the prompt's greedy next token, and
        drafts are verified in the same forward as that tail). At every yield ``history`` has
        grown by the ids fed since and ends just before the yielded token, with ``cache.length
        == len(history)``: a caller that stops iterating there may store the cache under
        ``history`` as it is. The generator returns when the context is full. ``extra``: more
        likely text for the drafts (e.g. the previous suggestion in this document), searched
        before ``history``. ``first_draft``: the draft for the first forward in place of the
        lookup's (e.g. ``speculation.continuation``), cut to ``draft_tokens``.
        """
        pending = [pending] if isinstance(pending, int) else list(pending)
        if cache.length != len(history):
            raise ValueError(f"cache holds {cache.length} positions but history has {len(history)} ids")
        if not pending or len(history) + len(pending) > cache.capacity:
            raise ValueError(f"{len(pending)} pending ids after {len(history)} do not fit a context of {cache.capacity}")
        self.stats_forwards = self.stats_drafted = self.stats_accepted = 0
        bias = self._no_stops if ban_stops else None
        device, capacity = self.static.device, cache.capacity
        while len(history) + len(pending) <= capacity:
            room = capacity - len(history) - len(pending)  # positions left after the pending ids
            first_limit = min(self.draft_tokens, room)
            if first_draft and first_limit:
                drafted, first_draft = list(first_draft[:first_limit]), ()
            else:
                limit = min(self.lookup_tokens, room)
                drafted = draft(history + pending, limit, extra) if limit else []
            fed = pending + drafted
            start, end = len(history), len(history) + len(fed)
            cache.reserve(end)  # may move the buffers: read them after this
            ids = torch.tensor(fed, device=device)  # [P + k]
            positions = torch.arange(start, end, device=device)  # [P + k]
            skip = len(pending) - 1  # rows before the last pending id predict nothing we need
            if self.bucketed:
                window, exact = min(window_for(end, capacity), cache.allocated), False
            else:
                window, exact = end, True
            chosen, logprobs = self._greedy(ids, positions, cache.keys, cache.values, bias, window, skip, exact).tolist()  # [1 + k] each
            predicted = [int(c) for c in chosen]
            self.stats_forwards += 1
            self.stats_drafted += len(drafted)
            # predicted[i] is the greedy token after fed[skip + i]; draft i stands while it matches.
            agreed = 0
            while agreed < len(drafted) and drafted[agreed] == predicted[agreed]:
                agreed += 1
            self.stats_accepted += agreed
            history.extend(pending)
            cache.length = len(history)
            for index in range(agreed):
                yield drafted[index], logprobs[index]
                history.append(drafted[index])
                cache.length = len(history)
            pending = [predicted[agreed]]
            yield pending[0], logprobs[agreed]
