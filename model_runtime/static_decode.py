"""A lean forward pass for multi-query GPTBigCode over fixed-size KV buffers.

It calls the model's own modules (so quantized ``Linear`` layers work unchanged) but skips the
generic machinery of ``transformers`` (cache objects, mask builders, output dataclasses) that
dominates a batch-1 decode step. Multi-query attention lets all heads share one K/V, so the
heads are folded into the query rows and attention is a single SDPA call per layer.

``StaticKV`` keeps one sequence's keys/values in buffers sized for the model's whole context;
its length is a plain int, so cropping is free; the buffers grow in blocks with the sequence. Greedy outputs equal the ``transformers`` path (tested on CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right


class StaticKV:
    """Keys and values of one sequence: ``keys``/``values`` [layers, allocated, head_dim].

    The buffers grow in blocks of ``BLOCK_POSITIONS`` up to ``capacity`` (the model's context),
    so a slot holds memory in proportion to its length, as a ``DynamicCache`` does: the KV
    budget (``kvCacheMb``) means the same on both paths. Between growths the buffers never
    move; cropping only lowers the integer ``length``."""

    BLOCK_POSITIONS = 128

    def __init__(self, layers: int, capacity: int, head_dim: int, dtype: torch.dtype, device, reserve: int = 0):
        self.capacity = capacity
        allocated = min(capacity, self._rounded(max(1, reserve)))
        self.keys = torch.zeros(layers, allocated, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.length = 0  # positions [0, length) hold valid KV

    @classmethod
    def _rounded(cls, positions: int) -> int:
        return -(-positions // cls.BLOCK_POSITIONS) * cls.BLOCK_POSITIONS

    @property
    def allocated(self) -> int:
        return self.keys.shape[1]

    @property
    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()

    def reserve(self, positions: int) -> None:
        """Make room for ``positions`` positions (at most ``capacity``), keeping what is held."""
        if positions <= self.allocated:
            return
        layers, _, head_dim = self.keys.shape
        allocated = min(self.capacity, max(self._rounded(positions), 2 * self.allocated))
        for name in ("keys", "values"):
            old = getattr(self, name)
            grown = old.new_zeros(layers, allocated, head_dim)
            grown[:, : self.length] = old[:, : self.length]
            setattr(self, name, grown)

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, length: int) -> None:
        """Same contract as ``DynamicCache.crop``: a negative value drops that many from the end."""
        self.length = self.length + length if length < 0 else min(length, self.length)

    def copy_prefix(self, length: int) -> "StaticKV":
        layers, _, head_dim = self.keys.shape
        copied = StaticKV(layers, self.capacity, head_dim, self.keys.dtype, self.keys.device, reserve=length + 1)
        copied.keys[:, :length] = self.keys[:, :length]
        copied.values[:, :length] = self.values[:, :length]
        copied.length = length
        return copied


def supports(model) -> bool:
    config = model.config
    return (
        getattr(config, "model_type", None) == "gpt_bigcode"
        and bool(getattr(config, "multi_query", False))
        and not getattr(config, "add_cross_attention", False)
    )


class StaticGPTBigCode:
    def __init__(self, model):
        if not supports(model):
            raise ValueError("the static decode path needs a multi-query GPTBigCode model")
        transformer = model.transformer
        self.model = model
        self.wte, self.wpe, self.blocks, self.ln_f = transformer.wte, transformer.wpe, transformer.h, transformer.ln_f
        self.lm_head = model.lm_head
        attention = self.blocks[0].attn
        self.embed_dim, self.heads, self.head_dim = attention.embed_dim, attention.num_heads, attention.head_dim
        self.scaling = attention.scaling
        self.capacity = model.config.n_positions
        self.dtype = self.wte.weight.dtype
        self.device = self.wte.weight.device

    def new_cache(self) -> StaticKV:
        return StaticKV(len(self.blocks), self.capacity, self.head_dim, self.dtype, self.device)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: StaticKV) -> torch.Tensor:
        """Run ``ids`` [T] at ``positions`` [T] (consecutive, the first equal to ``cache.length``
        or below it after a crop); return the last logits [vocab] (fp32).

        Writes their keys/values into ``cache`` and sets its length to the end position. No
        autograd context here: the caller enters ``inference_mode`` once per run.
        """
        count = ids.shape[0]
        start = cache.length
        end = start + count
        if end > cache.capacity:
            raise ValueError(f"position {end} is past the model's context of {cache.capacity}")
        cache.reserve(end)
        hidden = self.wte(ids) + self.wpe(positions)  # [T, E]
        # Query t sees keys up to start + t: the lower-right aligned causal pattern.
        mask = causal_lower_right(count, end) if count > 1 else None
        for layer, block in enumerate(self.blocks):
            hidden = hidden + self._attention(block, layer, block.ln_1(hidden), cache, positions, end, mask)
            hidden = hidden + block.mlp(block.ln_2(hidden))  # [T, E]
        cache.length = end
        last = self.ln_f(hidden[-1:])  # [1, E]
        return self.lm_head(last)[0].float()  # [vocab]

    def _attention(self, block, layer: int, x: torch.Tensor, cache: StaticKV, positions: torch.Tensor, end: int, mask) -> torch.Tensor:
        attention = block.attn
        count = x.shape[0]
        query, key, value = attention.c_attn(x).split((self.embed_dim, self.head_dim, self.head_dim), dim=-1)
        cache.keys[layer].index_copy_(0, positions, key)  # key: [T, D] into [capacity, D]
        cache.values[layer].index_copy_(0, positions, value)
        keys = cache.keys[layer, :end][None, None]  # [1, 1, S, D]: one K/V head shared by all heads
        values = cache.values[layer, :end][None, None]  # [1, 1, S, D]
        if count == 1:
            # Decode: fold the heads into query rows; every cached position is visible.
            rows = query.view(1, 1, self.heads, self.head_dim)  # [1, 1, H, D]
            out = F.scaled_dot_product_attention(rows, keys, values, scale=self.scaling)  # [1, 1, H, D]
            return attention.c_proj(out.reshape(1, self.embed_dim))  # [1, E]
        heads = query.view(count, self.heads, self.head_dim).transpose(0, 1)[None]  # [1, H, T, D]
        out = F.scaled_dot_product_attention(heads, keys, values, attn_mask=mask, scale=self.scaling, enable_gqa=True)
        return attention.c_proj(out[0].transpose(0, 1).reshape(count, self.embed_dim))  # [T, E]
