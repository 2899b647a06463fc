"""GGUF export: a tiny random GPTBigCode written as llama.cpp's ``starcoder``, read back with gguf's reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from tests.model_factory import build_model_dir, build_tokenizer  # noqa: E402
from training.gguf_export import ExportError, export_gguf, pre_tokenizer_of  # noqa: E402


def _field(reader, key):
    return reader.fields[key].contents()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tokenizer = build_tokenizer()
    # Two more embedding rows than tokens: the model's padding ids must become unused tokens.
    return build_model_dir(tmp_path_factory.mktemp("gguf-model"), tokenizer, n_positions=128, vocab_size=len(tokenizer) + 2)


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    path = export_gguf(model_dir, tmp_path_factory.mktemp("gguf-out") / "model.gguf", "f32", name="tiny-test")
    return gguf.GGUFReader(path)


def test_metadata_names_the_starcoder_architecture_and_its_sizes(exported, model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert _field(exported, "general.architecture") == "starcoder"
    assert _field(exported, "general.name") == "tiny-test"
    assert _field(exported, "starcoder.context_length") == 128
    assert _field(exported, "starcoder.embedding_length") == config["n_embd"]
    assert _field(exported, "starcoder.block_count") == config["n_layer"]
    assert _field(exported, "starcoder.feed_forward_length") == 4 * config["n_embd"]
    assert _field(exported, "starcoder.attention.head_count") == config["n_head"]
    assert _field(exported, "starcoder.attention.head_count_kv") == 1
    assert _field(exported, "starcoder.attention.layer_norm_epsilon") == pytest.approx(config["layer_norm_epsilon"])


def test_tensors_have_llama_cpp_names_and_shapes(exported, model_dir):
    from transformers import GPTBigCodeForCausalLM

    model = GPTBigCodeForCausalLM.from_pretrained(model_dir)
    state = model.state_dict()
    tensors = {t.name: t for t in exported.tensors}
    layers = model.config.n_layer
    expected = {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias"}
    for layer in range(layers):
        for part in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"):
            expected |= {f"blk.{layer}.{part}.weight", f"blk.{layer}.{part}.bias"}
    assert set(tensors) == expected  # tied output projection: llama.cpp reuses token_embd
    pairs = {
        "token_embd.weight": "transformer.wte.weight",
        "blk.1.attn_qkv.weight": "transformer.h.1.attn.c_attn.weight",
        "blk.1.attn_qkv.bias": "transformer.h.1.attn.c_attn.bias",
        "blk.0.ffn_down.weight": "transformer.h.0.mlp.c_proj.weight",
        "blk.0.ffn_up.weight": "transformer.h.0.mlp.c_fc.weight",
        "position_embd.weight": "transformer.wpe.weight",
    }
    for theirs, ours in pairs.items():
        tensor, reference = tensors[theirs], state[ours].numpy()
        # GGUF lists dimensions innermost first (ggml's ne); the data is row-major like ours.
        assert list(tensor.shape) == list(reversed(reference.shape)), theirs
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        np.testing.assert_array_equal(np.asarray(tensor.data).reshape(reference.shape), reference)


def test_token_list_equals_the_tokenizer_and_pads_the_model_rows(exported, model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens = _field(exported, "tokenizer.ggml.tokens")
    types = _field(exported, "tokenizer.ggml.token_type")
    assert len(tokens) == len(tokenizer) + 2 == len(types)
    assert tokens[: len(tokenizer)] == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert tokens[-2:] == [f"[PAD{len(tokenizer)}]", f"[PAD{len(tokenizer) + 1}]"]
    assert types[-2:] == [gguf.TokenType.UNUSED] * 2
    vocab = tokenizer.get_vocab()
    for name in ("<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>"):
        assert types[vocab[name]] == gguf.TokenType.CONTROL
    assert types[vocab["def"]] == gguf.TokenType.NORMAL
    assert _field(exported, "tokenizer.ggml.model") == "gpt2"
    assert _field(exported, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(exported, "tokenizer.ggml.fim_pre_token_id") == vocab["<fim-prefix>"]
    assert _field(exported, "tokenizer.ggml.fim_suf_token_id") == vocab["<fim-suffix>"]
    assert _field(exported, "tokenizer.ggml.fim_mid_token_id") == vocab["<fim-middle>"]
    assert _field(exported, "tokenizer.ggml.add_bos_token") is False
    merges = _field(exported, "tokenizer.ggml.merges")
    saved = json.loads((model_dir / "tokenizer.json").read_text())["model"]["merges"]
    assert merges == [m if isinstance(m, str) else " ".join(m) for m in saved]


def test_q8_0_export_quantizes_matrices_and_keeps_vectors_f32(model_dir, tmp_path):
    reader = gguf.GGUFReader(export_gguf(model_dir, tmp_path / "q8.gguf", "q8_0"))
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blk.0.attn_qkv.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert tensors["blk.0.attn_qkv.bias"].tensor_type == gguf.GGMLQuantizationType.F32
    from transformers import GPTBigCodeForCausalLM

    reference = GPTBigCodeForCausalLM.from_pretrained(model_dir).state_dict()["transformer.h.0.attn.c_attn.weight"].numpy()
    restored = gguf.quants.dequantize(tensors["blk.0.attn_qkv.weight"].data, gguf.GGMLQuantizationType.Q8_0)
    restored = restored.reshape(reference.shape)
    assert np.abs(restored - reference).max() <= np.abs(reference).max() / 127 + 1e-6  # one 8-bit step at most
    assert _field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0


def test_an_unmapped_pre_tokenizer_is_refused_with_a_reason():
    with pytest.raises(ExportError, match="no checked llama.cpp equivalent"):
        pre_tokenizer_of({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Metaspace"}})
    with pytest.raises(ExportError, match="byte-level BPE"):
        pre_tokenizer_of({"model": {"type": "Unigram"}})
