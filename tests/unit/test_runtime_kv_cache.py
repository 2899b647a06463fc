import torch
from transformers import AutoModelForCausalLM, DynamicCache

from model_runtime.decode import cache_argument
from model_runtime.kv_cache import KVSlotStore, cache_nbytes, common_prefix_length


def _prefill(model, ids):
    cache = DynamicCache()
    with torch.no_grad():
        model(torch.tensor([ids]), use_cache=True, **{cache_argument(model): cache})
    return cache


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0


def test_take_crops_own_slot_and_always_leaves_one_token(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    store = KVSlotStore(budget_bytes=1 << 30)
    ids = list(range(10, 30))
    store.put("doc", ids, _prefill(model, ids))
    cache, reused = store.take("doc", ids)  # identical prompt: one token must stay uncached
    assert reused == len(ids) - 1 and cache.get_seq_length() == reused
    assert len(store) == 0  # the caller owns it until put
    store.put("doc", ids, _prefill(model, ids))
    cache, reused = store.take("doc", ids[:12] + [99, 98])  # an edit in the middle
    assert reused == 12 and cache.get_seq_length() == 12


def test_other_documents_slot_is_copied_not_taken(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    store = KVSlotStore(budget_bytes=1 << 30)
    a = list(range(10, 30))
    store.put("a", a, _prefill(model, a))
    cache, reused = store.take("b", a[:15] + [5, 6])
    assert reused == 15 and cache.get_seq_length() == 15
    assert store.keys() == ["a"]
    (slot,) = store._slots.values()
    assert slot.cache.get_seq_length() == len(a)  # document a keeps its whole cache


def test_eviction_keeps_the_store_within_its_byte_budget(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    one = cache_nbytes(_prefill(model, list(range(10, 50))))
    store = KVSlotStore(budget_bytes=int(one * 2.5))
    for n, key in enumerate("abcd"):
        ids = [n + 10] + list(range(11, 50))
        store.put(key, ids, _prefill(model, ids))
        assert store.nbytes <= store.budget_bytes
    assert store.keys() == ["c", "d"]  # least recently used went first
    store.take("c", [12] + list(range(11, 50)))  # c is taken and put back: now most recent
    store.put("c", [12] + list(range(11, 50)), _prefill(model, [12] + list(range(11, 50))))
    store.put("e", [14] + list(range(11, 50)), _prefill(model, [14] + list(range(11, 50))))
    assert store.keys() == ["c", "e"]


def test_a_cache_larger_than_the_budget_is_not_kept(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    store = KVSlotStore(budget_bytes=100)
    store.put("a", [1, 2, 3], _prefill(model, [1, 2, 3]))
    assert len(store) == 0 and store.nbytes == 0
