"""Builds small, seeded GPTBigCode models and BPE tokenizers for tests: nothing is downloaded."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from training.tokenizer import train_tokenizer_from_files

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TOKENIZER_FILES = ("textwrap.py", "string.py", "bisect.py", "heapq.py", "functools.py", "fnmatch.py", "shlex.py")


def build_tokenizer(vocab_size: int = 400):
    return train_tokenizer_from_files([STDLIB / name for name in TOKENIZER_FILES], vocab_size)


def build_model_dir(target: Path, tokenizer=None, *, n_positions: int = 256, seed: int = 0, vocab_size: int | None = None) -> Path:
    """Save a random multi-query GPTBigCode model plus tokenizer to ``target`` and return it.

    ``initializer_range`` is large so the random model's logits are peaked: greedy outputs
    then depend strongly on the prompt, which makes cache-consistency tests sharper.
    """
    tokenizer = tokenizer or build_tokenizer()
    config = GPTBigCodeConfig(
        vocab_size=vocab_size or len(tokenizer),
        n_positions=n_positions,
        n_embd=64,
        n_layer=2,
        n_head=4,
        multi_query=True,
        initializer_range=0.2,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    model = GPTBigCodeForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
