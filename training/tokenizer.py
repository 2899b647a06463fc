"""Byte-level BPE tokenizer with SantaCoder's special tokens, trained on local text.

Used by the training script for the bundled model and by the tests, which build a small one
from a few standard-library files so they never need a download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
# SantaCoder's FIM family (hyphens); StarCoder's uses underscores.
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"
SPECIAL_TOKENS = (END_OF_TEXT, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD)


def _read_texts(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        try:
            yield Path(path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...] = SPECIAL_TOKENS
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE whose first ids are ``special_tokens`` (end of text is id 0)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=special_tokens[0],
        eos_token=special_tokens[0],
        unk_token=special_tokens[0],
        additional_special_tokens=list(special_tokens[1:]),
        clean_up_tokenization_spaces=False,
    )


def train_tokenizer_from_files(paths: Iterable[Path], vocab_size: int) -> PreTrainedTokenizerFast:
    return train_tokenizer(_read_texts(paths), vocab_size)
