"""Training checkpoints: one self-contained ``.pt`` file per save.

A checkpoint holds everything needed to resume bit-for-bit on the same device and to export
without the run directory: the model config and weights, the optimizer state, the step and
token counters, the wall-clock spent, the training arguments, the row stream state, the
torch / CUDA / Python RNG states and the tokenizer (its ``tokenizer.json`` text).

Files are ``<run>/checkpoints/step-00001234.pt``; the newest ``KEEP_CHECKPOINTS`` are kept.
Writes go to a temporary name first and are renamed, so a killed run never leaves a torn file.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from .tokenizer import SPECIAL_TOKENS

KEEP_CHECKPOINTS = 3
_NAME = re.compile(r"step-(\d+)\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of ``run_dir``, oldest first."""
    found = [(int(m.group(1)), p) for p in checkpoint_dir(run_dir).glob("step-*.pt") if (m := _NAME.search(p.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def capture_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, payload: dict) -> Path:
    """Write ``payload`` (plus ``step``) as ``step-<step>.pt`` and prune old ones; returns the path."""
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:08d}.pt"
    temporary = path.with_suffix(".pt.tmp")
    torch.save({**payload, "step": step}, temporary)
    os.replace(temporary, path)
    for old in list_checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    """The payload saved by ``save_checkpoint``, tensors on the CPU."""
    # Our own files: they hold Python RNG tuples and argument dicts, hence weights_only=False.
    return torch.load(path, map_location="cpu", weights_only=False)


def tokenizer_to_json(tokenizer: PreTrainedTokenizerFast) -> str:
    return tokenizer.backend_tokenizer.to_str()


def tokenizer_from_json(text: str) -> PreTrainedTokenizerFast:
    """Rebuild the tokenizer saved with ``tokenizer_to_json`` (special tokens as in ``tokenizer.py``)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(text),
        bos_token=SPECIAL_TOKENS[0],
        eos_token=SPECIAL_TOKENS[0],
        unk_token=SPECIAL_TOKENS[0],
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        clean_up_tokenization_spaces=False,
    )
