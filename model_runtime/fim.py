"""Fill-in-the-middle prompt layouts, with the FIM token names read from the vocabulary.

PSM: <prefix> P <suffix> S <middle>      -- every keystroke in P moves S, so S is recomputed.
SPM: <prefix><suffix> S <middle> P       -- typing appends to P, so the cached KV stays valid.
(SPM is SantaCoder's "SPM variant": both sentinels first, then the suffix.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from .api import FimOrder, ModelLoadError, check_fim_order

# (prefix, middle, suffix) sentinel names of the model families we know.
KNOWN_FIM_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("<fim-prefix>", "<fim-middle>", "<fim-suffix>"),  # SantaCoder
    ("<fim_prefix>", "<fim_middle>", "<fim_suffix>"),  # StarCoder, StarCoder2
    ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"),  # Qwen2.5-Coder, DeepSeek-style
)


@dataclass(frozen=True)
class FimTokens:
    prefix_id: int
    middle_id: int
    suffix_id: int
    names: tuple[str, str, str]  # (prefix, middle, suffix)

    def layout(
        self, prefix_ids: Sequence[int], suffix_ids: Sequence[int], order: FimOrder, context_ids: Sequence[int] = ()
    ) -> list[int]:
        """Token ids of the prompt; the model's next token is the first of the middle.

        ``context_ids`` (extra context from other files) go first, before every sentinel: they
        change only when the chosen context changes, so their KV stays reusable while typing.
        """
        if check_fim_order(order) == "psm":
            return [*context_ids, self.prefix_id, *prefix_ids, self.suffix_id, *suffix_ids, self.middle_id]
        return [*context_ids, self.prefix_id, self.suffix_id, *suffix_ids, self.middle_id, *prefix_ids]


def find_fim_tokens(vocab: Mapping[str, int], override: tuple[str, str, str] | None = None) -> FimTokens:
    """Read the FIM sentinels from ``vocab``; ``override`` names (prefix, middle, suffix) explicitly."""
    families = (override,) if override else KNOWN_FIM_FAMILIES
    for names in families:
        if all(name in vocab for name in names):
            prefix_name, middle_name, suffix_name = names
            names = (prefix_name, middle_name, suffix_name)  # a tuple even when the override came as a list
            return FimTokens(prefix_id=vocab[prefix_name], middle_id=vocab[middle_name], suffix_id=vocab[suffix_name], names=names)
    if override:
        missing = [name for name in override if name not in vocab]
        raise ModelLoadError(f"FIM tokens {missing} are not in the tokenizer's vocabulary: fix the fim_tokens setting")
    raise ModelLoadError(
        "the tokenizer has no fill-in-the-middle tokens (looked for <fim-prefix>, <fim_prefix>, <|fim_prefix|>): "
        "use a FIM-trained model or name its tokens with the fim_tokens setting"
    )
