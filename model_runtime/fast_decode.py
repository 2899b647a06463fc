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

import logging
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from .speculation import draft
from .static_decode import StaticGPTBigCode, StaticKV

log = logging.getLogger(__name__)

WINDOW_BUCKET_TOKENS = 256  # attention windows are multiples of this (one compiled graph each)


def window_for(end_position: int, capacity: int) -> int:
    """The attention window covering positions [0, end_position): the next bucket, capped."""
    return min(capacity, -(-end_position // WINDOW_BUCKET_TOKENS) * WINDOW_BUCKET_TOKENS)


class FixedShapeForward:
    """``forward(ids [T], positions [T], keys, values, window) -> greedy ids [T]`` on the device.

    Greedy over the first ``vocab_size`` logits plus ``bias`` (-inf on ids that must not be
    picked: the model's padding rows, and the stop ids when a caller ignores end-of-text).
    ``logits`` is the same forward returning the fp32 logits [T, vocab_size] instead (tests).
    """

    def __init__(self, static: StaticGPTBigCode, vocab_size: int):
        self.static = static
        self.vocab_size = vocab_size

    def logits(self, ids, positions, keys, values, window: int) -> torch.Tensor:
        s = self.static
        count = ids.shape[0]
        hidden = s.wte(ids) + s.wpe(positions)  # [T, E]
        # Query t sees buffer positions <= positions[t]; one row per (token, head), token-major.
        visible = torch.arange(window, device=ids.device)[None, :] <= positions[:, None]  # [T, W]
        visible = visible.repeat_interleave(s.heads, dim=0) if count > 1 else visible  # [T*H, W] or [1, W]
        for layer, block in enumerate(s.blocks):
            x = block.ln_1(hidden)  # [T, E]
            query, key, value = block.attn.c_attn(x).split((s.embed_dim, s.head_dim, s.head_dim), dim=-1)
            keys[layer].index_copy_(0, positions, key)  # key: [T, D] into [capacity, D]
            values[layer].index_copy_(0, positions, value)
            rows = query.reshape(1, 1, count * s.heads, s.head_dim)  # [1, 1, T*H, D]: heads folded into rows
            seen_keys = keys[layer, :window][None, None]  # [1, 1, W, D]: one K/V head for all heads
            seen_values = values[layer, :window][None, None]  # [1, 1, W, D]
            out = F.scaled_dot_product_attention(rows, seen_keys, seen_values, attn_mask=visible, scale=s.scaling)  # [1, 1, T*H, D]
            hidden = hidden + block.attn.c_proj(out.reshape(count, s.embed_dim))  # [T, E]
            hidden = hidden + block.mlp(block.ln_2(hidden))  # [T, E]
        return s.lm_head(s.ln_f(hidden))[:, : self.vocab_size].float()  # [T, V]

    def greedy(self, ids, positions, keys, values, bias, window: int) -> torch.Tensor:
        """[2, T]: the greedy ids (as floats) and their log-probabilities, in one tensor so the
        host reads both with one sync. The log-probability is over the biased logits, as the
        engine's ``_next_token`` reports it."""
        logits = self.logits(ids, positions, keys, values, window) + bias  # [T, V]
        best, chosen = logits.max(dim=-1)  # [T], [T]
        return torch.stack([chosen.to(best.dtype), best - torch.logsumexp(logits, dim=-1)])  # [2, T]


class GreedyDecoder:
    """Greedy decoding through ``FixedShapeForward``, optionally compiled, optionally speculative.

    ``compile_step``: wrap the step in ``torch.compile`` (inductor, static shapes, one graph per
    window bucket and draft length). ``draft_tokens``: how many prompt-lookup tokens to verify
    per forward (0: one token per forward).
    """

    def __init__(self, static: StaticGPTBigCode, vocab_size: int, stop_ids: Sequence[int], *, draft_tokens: int = 0, compile_step: bool = False):
        self.static = static
        self.forward = FixedShapeForward(static, vocab_size)
        self.draft_tokens = draft_tokens
        device = static.device
        self._bias = torch.zeros(vocab_size, device=device)  # [V]
        self._no_stops = self._bias.clone().index_fill_(0, torch.tensor(sorted(stop_ids), device=device), float("-inf"))  # [V]
        self._greedy = self.forward.greedy
        if compile_step:
            self._greedy = torch.compile(self.forward.greedy, fullgraph=True, dynamic=False)
        self.stats_forwards = 0  # forwards run by the last ``tokens`` call
        self.stats_drafted = 0  # draft tokens proposed by the last call
        self.stats_accepted = 0  # of which the model agreed with

    def tokens(self, cache: StaticKV, history: list[int], first: int, ban_stops: bool = False, extra: Sequence[int] = ()) -> Iterator[tuple[int, float]]:
        """Yield (id, log-probability) of the greedy tokens that follow ``first`` (not yielded).

        ``history``: the ids whose KV ``cache`` holds (``cache.length == len(history)``),
        prompt first; the lookup drafts from it. ``first``: the token the caller picked from
        the prompt's logits. At every yield ``history`` has grown by the ids fed since and
        ends just before the yielded token, with ``cache.length == len(history)``: a caller
        that stops iterating there may store the cache under ``history`` as it is. The
        generator returns when the context is full. ``extra``: more likely text for the drafts
        (e.g. the previous suggestion in this document), searched before ``history``.
        """
        if cache.length != len(history):
            raise ValueError(f"cache holds {cache.length} positions but history has {len(history)} ids")
        self.stats_forwards = self.stats_drafted = self.stats_accepted = 0
        bias = self._no_stops if ban_stops else self._bias
        device, capacity = self.static.device, cache.capacity
        token = first
        while len(history) < capacity:
            room = capacity - len(history) - 1  # positions left after ``token``'s
            drafted = draft(history + [token], min(self.draft_tokens, room), extra) if self.draft_tokens else []
            fed = [token, *drafted]
            start, end = len(history), len(history) + len(fed)
            cache.reserve(end)  # may move the buffers: read them after this
            ids = torch.tensor(fed, device=device)  # [1 + k]
            positions = torch.arange(start, end, device=device)  # [1 + k]
            window = min(window_for(end, capacity), cache.allocated)
            chosen, logprobs = self._greedy(ids, positions, cache.keys, cache.values, bias, window).tolist()  # [1 + k] each
            predicted = [int(c) for c in chosen]
            self.stats_forwards += 1
            self.stats_drafted += len(drafted)
            # predicted[i] is the greedy token after fed[i]; draft i+1 stands while it matches.
            agreed = 0
            while agreed < len(drafted) and drafted[agreed] == predicted[agreed]:
                agreed += 1
            self.stats_accepted += agreed
            history.append(token)
            cache.length = len(history)
            for index in range(agreed):
                yield drafted[index], logprobs[index]
                history.append(drafted[index])
                cache.length = len(history)
            token = predicted[agreed]
            yield token, logprobs[agreed]
