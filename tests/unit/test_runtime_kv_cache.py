"""The KV slot store, on both cache kinds: ``StaticKV`` (the default path for multi-query
GPTBigCode) and transformers' ``DynamicCache`` (other families)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from model_runtime.decode import cache_argument
from model_runtime.kv_cache import KVSlotStore, cache_nbytes, common_prefix_length
from model_runtime.static_decode import StaticGPTBigCode, StaticKV


@pytest.fixture(params=["static", "dynamic"])
def prefill(request, tiny_model_dir):
    """(model, prefill(ids) -> a cache holding ids) for one cache kind."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    if request.param == "static":
        static = StaticGPTBigCode(model)

        def run(ids):
            cache = static.new_cache()
            with torch.inference_mode():
                static.forward(torch.tensor(ids), torch.arange(len(ids)), cache)
            return cache
    else:

        def run(ids):
            cache = DynamicCache()
            with torch.no_grad():
                model(torch.tensor([ids]), use_cache=True, **{cache_argument(model): cache})
            return cache

    return run


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0


def test_take_crops_own_slot_and_always_leaves_one_token(prefill):
    store = KVSlotStore(budget_bytes=1 << 30)
    ids = list(range(10, 30))
    store.put("doc", ids, prefill(ids))
    cache, reused = store.take("doc", ids)  # identical prompt: one token must stay uncached
    assert reused == len(ids) - 1 and cache.get_seq_length() == reused
    assert len(store) == 0  # the caller owns it until put
    store.put("doc", ids, prefill(ids))
    cache, reused = store.take("doc", ids[:12] + [99, 98])  # an edit in the middle
    assert reused == 12 and cache.get_seq_length() == 12


def test_other_documents_slot_is_copied_not_taken(prefill):
    store = KVSlotStore(budget_bytes=1 << 30)
    a = list(range(10, 30))
    store.put("a", a, prefill(a))
    cache, reused = store.take("b", a[:15] + [5, 6])
    assert reused == 15 and cache.get_seq_length() == 15
    assert store.keys() == ["a"]
    (slot,) = store._slots.values()
    assert slot.cache.get_seq_length() == len(a)  # document a keeps its whole cache


def test_eviction_keeps_the_store_within_its_byte_budget(prefill):
    one = cache_nbytes(prefill(list(range(10, 50))))
    store = KVSlotStore(budget_bytes=int(one * 2.5))
    for n, key in enumerate("abcd"):
        ids = [n + 10] + list(range(11, 50))
        store.put(key, ids, prefill(ids))
        assert store.nbytes <= store.budget_bytes
    assert store.keys() == ["c", "d"]  # least recently used went first
    store.take("c", [12] + list(range(11, 50)))  # c is taken and put back: now most recent
    store.put("c", [12] + list(range(11, 50)), prefill([12] + list(range(11, 50))))
    store.put("e", [14] + list(range(11, 50)), prefill([14] + list(range(11, 50))))
    assert store.keys() == ["c", "e"]


def test_a_cache_larger_than_the_budget_is_not_kept(prefill):
    store = KVSlotStore(budget_bytes=100)
    store.put("a", [1, 2, 3], prefill([1, 2, 3]))
    assert len(store) == 0 and store.nbytes == 0


def test_both_cache_kinds_count_memory_in_proportion_to_length(tiny_model_dir):
    """kvCacheMb means the same on both paths: a slot holds about its length's worth of KV
    (the static buffers grow in blocks of 128 positions, never to the whole context at once)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    static = StaticGPTBigCode(model)
    for length in (5, 130, 250):
        ids = [10 + i % 50 for i in range(length)]
        cache = static.new_cache()
        with torch.inference_mode():
            static.forward(torch.tensor(ids), torch.arange(length), cache)
        dynamic = DynamicCache()
        with torch.no_grad():
            model(torch.tensor([ids]), use_cache=True, **{cache_argument(model): dynamic})
        per_position = cache_nbytes(dynamic) / length
        assert cache.get_seq_length() == length
        assert cache_nbytes(dynamic) <= cache_nbytes(cache) < cache_nbytes(dynamic) + 2 * 128 * per_position
        assert cache.allocated <= StaticKV._rounded(length)
