"""KV caches of recent prompts, one slot per key (e.g. a document), bounded by bytes.

A cache is either a ``transformers`` ``DynamicCache`` or our ``StaticKV``; both offer
``get_seq_length()`` and ``crop(-k)``.

A new prompt reuses the slot that shares the longest token prefix with it. The caller owns a
cache between ``take`` and ``put``; the store is not thread-safe (the engine's lock guards it).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import DynamicCache

from .static_decode import StaticKV


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def cache_nbytes(cache) -> int:
    if isinstance(cache, StaticKV):
        return cache.nbytes
    total = 0
    for layer in cache.layers:
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def copy_prefix(cache, length: int):
    """A new cache holding the first ``length`` positions of ``cache`` (tensors copied)."""
    if isinstance(cache, StaticKV):
        return cache.copy_prefix(length)
    copied = DynamicCache()
    for index, layer in enumerate(cache.layers):
        # keys/values: [batch, kv_heads, seq, head_dim]; MQA has kv_heads == 1
        copied.update(layer.keys[:, :, :length].clone(), layer.values[:, :, :length].clone(), index)
    return copied


@dataclass
class _Slot:
    token_ids: list[int]  # the tokens whose KV the cache holds, in order
    cache: DynamicCache | StaticKV
    nbytes: int


class KVSlotStore:
    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # least recently used first
        self._anonymous = itertools.count()

    @property
    def nbytes(self) -> int:
        return sum(slot.nbytes for slot in self._slots.values())

    def __len__(self) -> int:
        return len(self._slots)

    def keys(self) -> list[str]:
        return list(self._slots)

    def token_ids(self, key: str | None) -> list[int]:
        """The ids held under ``key`` (empty if none); the slot is left as it is."""
        slot = self._slots.get(key) if key is not None else None
        return list(slot.token_ids) if slot is not None else []

    def take(self, key: str | None, token_ids: Sequence[int]) -> tuple[DynamicCache | StaticKV | None, int]:
        """Return (cache, reused): a cache holding exactly ``token_ids[:reused]``, or (None, 0).

        At least one token is always left uncached, so the caller has logits to sample from.
        The slot is removed when it is the caller's own (or wholly contained in the prompt);
        a slot of another key is copied so that document keeps its cache.
        """
        best_key, best_length = None, 0
        for slot_key, slot in self._slots.items():
            length = common_prefix_length(slot.token_ids, token_ids)
            if length > best_length or (length == best_length and length and slot_key == key):
                best_key, best_length = slot_key, length
        reused = min(best_length, len(token_ids) - 1)
        if best_key is None or reused <= 0:
            return None, 0
        slot = self._slots[best_key]
        if best_key == key or best_length == len(slot.token_ids):
            del self._slots[best_key]
            if slot.cache.get_seq_length() > reused:
                slot.cache.crop(reused - slot.cache.get_seq_length())  # negative: drop from the end
            return slot.cache, reused
        self._slots.move_to_end(best_key)
        return copy_prefix(slot.cache, reused), reused

    def put(self, key: str | None, token_ids: Sequence[int], cache: DynamicCache | StaticKV) -> None:
        """Store ``cache`` (holding ``token_ids``) under ``key``, evicting the least recently used."""
        if key is None:
            key = f"\0anonymous-{next(self._anonymous)}"
        nbytes = cache_nbytes(cache)
        self._slots.pop(key, None)
        if nbytes > self.budget_bytes:
            return
        self._slots[key] = _Slot(list(token_ids), cache, nbytes)
        while self.nbytes > self.budget_bytes:
            self._slots.popitem(last=False)

    def clear(self) -> None:
        self._slots.clear()
