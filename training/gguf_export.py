"""Export a GPTBigCode model directory as one GGUF file for llama.cpp (and Ollama).

``python -m training.gguf_export --model model_runtime/bundled/tiny --out tiny.gguf [--type q8_0]``

GPTBigCode is llama.cpp's ``starcoder`` architecture: the same blocks (pre-norm, fused QKV with
one shared key/value head, tanh-GELU MLP, learned absolute positions), so the tensors are written
as they are, renamed. ``nn.Linear`` weights are [out, in], which is llama.cpp's layout too.
When the model ties its output projection to the embeddings (as SantaCoder and the bundled model
do), no ``output`` tensor is written and llama.cpp reuses ``token_embd``.

The tokenizer goes in as a GPT-2 style byte-level BPE (``tokenizer.ggml.model = gpt2``) with
llama.cpp's ``gpt-2`` pre-tokenizer, which splits text exactly like a ``tokenizers`` ByteLevel
pre-tokenizer with its regex on and no prefix space: llama.cpp's token ids then equal ours.
Added (special) tokens are control tokens; ids past the tokenizer's size (a model may pad its
vocabulary) are unused placeholders. llama.cpp recognises ``<fim-prefix>`` and its kin by
name; their ids are written under the ``tokenizer.ggml.fim_*`` keys as well.

Types: ``f32`` (exact), ``f16``, ``q8_0`` (llama.cpp's 8-bit blocks of 32, quantized here with
the ``gguf`` package's own numpy code). 1-D tensors (norms, biases) always stay f32.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import gguf
import numpy as np
import torch

ARCHITECTURE = "starcoder"
TYPES = ("f32", "f16", "q8_0")
_FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
_FIM_KEYS = {
    "<fim-prefix>": gguf.Keys.Tokenizer.FIM_PRE_ID,
    "<fim-suffix>": gguf.Keys.Tokenizer.FIM_SUF_ID,
    "<fim-middle>": gguf.Keys.Tokenizer.FIM_MID_ID,
    "<fim-pad>": gguf.Keys.Tokenizer.FIM_PAD_ID,
    "<fim_prefix>": gguf.Keys.Tokenizer.FIM_PRE_ID,
    "<fim_suffix>": gguf.Keys.Tokenizer.FIM_SUF_ID,
    "<fim_middle>": gguf.Keys.Tokenizer.FIM_MID_ID,
    "<fim_pad>": gguf.Keys.Tokenizer.FIM_PAD_ID,
}


class ExportError(ValueError):
    """The model or tokenizer cannot be written as a llama.cpp ``starcoder`` GGUF (one line)."""


def tensor_names(layers: int, tied: bool) -> dict[str, str]:
    """Hugging Face parameter name -> GGUF tensor name, for a GPTBigCode of ``layers`` blocks."""
    names = {
        "transformer.wte.weight": "token_embd.weight",
        "transformer.wpe.weight": "position_embd.weight",
        "transformer.ln_f.weight": "output_norm.weight",
        "transformer.ln_f.bias": "output_norm.bias",
    }
    if not tied:
        names["lm_head.weight"] = "output.weight"
    parts = {
        "ln_1": "attn_norm",
        "attn.c_attn": "attn_qkv",
        "attn.c_proj": "attn_output",
        "ln_2": "ffn_norm",
        "mlp.c_fc": "ffn_up",
        "mlp.c_proj": "ffn_down",
    }
    for layer in range(layers):
        for ours, theirs in parts.items():
            for kind in ("weight", "bias"):
                names[f"transformer.h.{layer}.{ours}.{kind}"] = f"blk.{layer}.{theirs}.{kind}"
    return names


def pre_tokenizer_of(tokenizer_json: dict) -> str:
    """llama.cpp's pre-tokenizer name for a ``tokenizer.json``, or ``ExportError``."""
    model = tokenizer_json.get("model", {})
    if model.get("type") != "BPE":
        raise ExportError(f"only byte-level BPE tokenizers can be exported, not {model.get('type')!r}")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return "gpt-2"
    raise ExportError(
        f"the tokenizer's pre-tokenizer {json.dumps(pre)[:120]} has no checked llama.cpp equivalent "
        "(only a plain GPT-2 style ByteLevel split is mapped, to llama.cpp's 'gpt-2')"
    )


def vocabulary(tokenizer_json: dict, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges) padded to the model's ``vocab_size`` rows."""
    pieces = dict(tokenizer_json["model"]["vocab"])
    control = set()
    for added in tokenizer_json.get("added_tokens", []):
        pieces[added["content"]] = added["id"]
        if added.get("special", False):
            control.add(added["id"])
    by_id = {token_id: piece for piece, token_id in pieces.items()}
    if len(by_id) != len(pieces):
        raise ExportError("the tokenizer maps two pieces to one id")
    size = max(by_id) + 1
    if size > vocab_size:
        raise ExportError(f"the tokenizer has {size} ids but the model only {vocab_size} embedding rows")
    tokens, types = [], []
    for token_id in range(vocab_size):
        piece = by_id.get(token_id)
        if piece is None:  # the model's padding rows (or a hole in the tokenizer's ids)
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(piece)
            types.append(gguf.TokenType.CONTROL if token_id in control else gguf.TokenType.NORMAL)
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in tokenizer_json["model"].get("merges", [])]
    return tokens, [int(t) for t in types], merges


def _tensor_data(name: str, tensor: torch.Tensor, kind: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    data = tensor.detach().to(torch.float32).cpu().numpy()
    if data.ndim == 1 or kind == "f32":
        return data, gguf.GGMLQuantizationType.F32
    if kind == "f16":
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    if data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]:
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16  # rows not a whole number of blocks
    return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0


def export_gguf(model_dir: Path, out_path: Path, kind: str = "f32", name: str | None = None) -> Path:
    """Write ``model_dir`` (config.json, weights, tokenizer.json) as a GGUF file at ``out_path``."""
    if kind not in TYPES:
        raise ExportError(f"unknown type {kind!r}: choose one of {', '.join(TYPES)}")
    from transformers import GPTBigCodeForCausalLM

    model_dir = Path(model_dir)
    tokenizer_path = model_dir / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ExportError(f"{tokenizer_path} is missing: the export needs the fast tokenizer's tokenizer.json")
    tokenizer_json = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    model = GPTBigCodeForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = model.config
    if config.model_type != "gpt_bigcode" or not config.multi_query:
        raise ExportError("only multi-query GPTBigCode models map to llama.cpp's starcoder architecture")
    if config.activation_function not in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
        raise ExportError(f"activation {config.activation_function!r} is not llama.cpp's tanh GELU")
    pre = pre_tokenizer_of(tokenizer_json)
    tokens, types, merges = vocabulary(tokenizer_json, config.vocab_size)
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", True)) or torch.equal(state["lm_head.weight"], state["transformer.wte.weight"])
    names = tensor_names(config.n_layer, tied)

    writer = gguf.GGUFWriter(str(out_path), ARCHITECTURE)
    writer.add_name(name or model_dir.name)
    writer.add_context_length(config.n_positions)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_eps(config.layer_norm_epsilon)
    writer.add_file_type(_FILE_TYPES[kind])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    ids = {piece: token_id for token_id, piece in enumerate(tokens)}
    if config.bos_token_id is not None:
        writer.add_bos_token_id(config.bos_token_id)
    if config.eos_token_id is not None:
        writer.add_eos_token_id(config.eos_token_id)
    if config.pad_token_id is not None:
        writer.add_pad_token_id(config.pad_token_id)
    writer.add_add_bos_token(False)  # our prompts start with the FIM layout, nothing before it
    for piece, key in _FIM_KEYS.items():
        if piece in ids:
            writer.add_uint32(key, ids[piece])
    for hf_name, gguf_name in names.items():
        data, dtype = _tensor_data(hf_name, state[hf_name], kind)
        writer.add_tensor(gguf_name, data, raw_dtype=dtype)
    unused = set(state) - set(names) - {"lm_head.weight"}
    if unused:
        raise ExportError(f"parameters with no GGUF name: {sorted(unused)[:4]}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model directory (config.json, weights, tokenizer.json)")
    parser.add_argument("--out", type=Path, required=True, help="the .gguf file to write")
    parser.add_argument("--type", choices=TYPES, default="f32")
    parser.add_argument("--name", help="general.name in the file (default: the directory's name)")
    args = parser.parse_args(argv)
    try:
        export_gguf(args.model, args.out, args.type, args.name)
    except ExportError as error:
        parser.error(str(error))
    print(f"exported {args.model} to {args.out} ({args.type})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
