"""From a request to prompt token ids: budget, token healing, truncation, FIM layout.

Torch-free, so every engine (the in-process one and a remote client) builds byte-identical
prompts from the same request, and the server can ask for the budget without loading torch.

Token healing: the prompt's last tokens are often not the tokens the model would have chosen
at that point. Two cases are backed off and handed to the first generated tokens instead:

- a partial word (``wo`` of ``world``): the last token, when longer tokens start with its bytes;
- trailing whitespace (the indentation the user or the editor typed): every trailing token made
  of whitespace only, up to and including the one holding the line break. Byte-level BPE merges
  ``"\\n" + 12 spaces`` into one token at the end of a text, yet code is tokenized
  ``"\\n" + 11 spaces``, ``" return"``; a prompt ending in the 12-space token was rarely
  followed by code in training, and the model answered ``" return"`` (one space too many).

The generated text must then start with the removed bytes *exactly* (``HealingGuide``): each
constrained step allows tokens that are a prefix of what remains or that start with all of it;
when the removed bytes are whitespace, the byte that follows them must not be whitespace, so
a suggestion at an indented (or empty) line never indents deeper than what the user typed,
and never starts by leaving the cursor line blank.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from .api import CompletionRequest, ModelInfo, PromptBudget
from .fim import FimTokens
from .vocabulary import TokenTable

log = logging.getLogger(__name__)

FIM_SENTINEL_TOKENS = 3
TRUNCATION_STEP_TOKENS = 128
MAX_HEALED_TOKENS = 8  # trailing whitespace tokens backed off at most
_clamp_logged: set[tuple[int, int]] = set()


def prompt_budget(context_tokens: int, max_new_tokens: int) -> PromptBudget:
    """The one rule for how a context is shared: new tokens get at most half of it, the
    prompt (extra context, prefix and suffix, without the FIM sentinels) the rest.

    A cap that cannot fit is clamped, with one log line per (context, cap) pair."""
    new = max(1, min(max_new_tokens, context_tokens // 2))
    if new != max_new_tokens and (context_tokens, max_new_tokens) not in _clamp_logged:
        _clamp_logged.add((context_tokens, max_new_tokens))
        log.warning(
            "max new tokens %d does not fit the model's %d-token context: using %d, so the prompt keeps %d tokens",
            max_new_tokens, context_tokens, new, context_tokens - new - FIM_SENTINEL_TOKENS,
        )  # fmt: skip
    return PromptBudget(max_new_tokens=new, prompt_tokens=max(0, context_tokens - new - FIM_SENTINEL_TOKENS))


@dataclass(frozen=True)
class Prompt:
    token_ids: list[int]
    healed: bytes  # prompt bytes backed off by token healing; the generated text starts with them
    truncated_tokens: int  # prompt tokens dropped to fit (extra context dropped whole counts too)
    max_new_tokens: int
    context_tokens: int  # how many of token_ids are the extra-context block (0 when none or dropped)

    @property
    def healed_chars(self) -> int:
        return len(self.healed.decode("utf-8", errors="replace"))


def heal(table: TokenTable, prefix_ids: Sequence[int]) -> tuple[list[int], bytes]:
    """(the prefix ids to keep, the bytes backed off); see the module docstring."""
    ids = list(prefix_ids)
    if not ids:
        return ids, b""
    last = table.bytes_of[ids[-1]]
    if last and not last.isspace():
        if len(table.ids_starting_with(last)) > 1:
            return ids[:-1], last
        return ids, b""
    removed = b""
    while ids and len(ids) > len(prefix_ids) - MAX_HEALED_TOKENS:
        piece = table.bytes_of[ids[-1]]
        if not piece or not piece.isspace():
            break
        removed = piece + removed
        ids.pop()
        if b"\n" in piece or b"\r" in piece:
            break  # the indentation starts at its line break; earlier blank lines stay put
    return ids, removed


class HealingGuide:
    """Which ids the next generated token may be, until the healed bytes are produced.

    ``constraint()`` gives ``(allowed, banned)``: ``allowed`` a list of ids (the only ones
    possible) or ``None``; ``banned`` a list of ids that are not possible, or ``None``. Both
    ``None``: the healing is over, decoding is free. Special ids are never allowed while a
    constraint holds (they have no bytes)."""

    def __init__(self, table: TokenTable, healed: bytes):
        self._table = table
        self._remaining = healed
        self._whitespace = healed.isspace()  # then no whitespace may follow the healed bytes
        self.done = not healed

    def constraint(self) -> tuple[list[int] | None, list[int] | None]:
        if self.done:
            return None, None
        if not self._remaining:  # healed exactly at a token boundary: no deeper indent
            return None, self._table.ids_starting_with_whitespace
        table, remaining = self._table, self._remaining
        allowed = [table.id_of_bytes[remaining[:n]] for n in range(1, len(remaining)) if remaining[:n] in table.id_of_bytes]
        for token in table.ids_starting_with(remaining):
            extra = table.bytes_of[token][len(remaining) :]
            if not (self._whitespace and extra[:1].isspace()):
                allowed.append(token)
        return allowed, None

    def advance(self, token: int) -> None:
        """Record the token just chosen (one that ``constraint()`` allowed)."""
        if self.done:
            return
        if not self._remaining:  # the step after an exact end on a blank
            self.done = True
            return
        piece = self._table.bytes_of[token]
        if len(piece) < len(self._remaining):
            self._remaining = self._remaining[len(piece) :]
            return
        went_past = len(piece) > len(self._remaining)  # then it chose the next character too
        self._remaining = b""
        self.done = went_past or not self._whitespace


class PromptBuilder:
    """Builds ``Prompt``s for one model: its tokenizer (as a function), token table and FIM tokens."""

    def __init__(self, tokenize: Callable[[str], list[int]], table: TokenTable, fim: FimTokens, info: ModelInfo):
        self.tokenize = tokenize
        self.table = table
        self.fim = fim
        self.info = info

    def build(self, request: CompletionRequest, order: str, budget_tokens: int | None = None) -> Prompt:
        """Tokenize, heal and cut ``request`` to fit the context, or ``budget_tokens`` of prefix
        and suffix when given (the shorter retry after running out of memory)."""
        budget = prompt_budget(self.info.context_tokens, request.max_new_tokens)
        prefix_ids, suffix_ids = self.tokenize(request.prefix), self.tokenize(request.suffix)
        healed = b""
        if request.token_healing:
            prefix_ids, healed = heal(self.table, prefix_ids)
        context_ids = self.tokenize(request.extra_context)
        total, step = budget.prompt_tokens, TRUNCATION_STEP_TOKENS
        if budget_tokens is not None and budget_tokens < total:
            # Finer steps for a small budget: 128-token steps would swallow a short prefix whole.
            total = max(0, budget_tokens)
            step = max(1, min(step, total // 4))
        truncated = 0
        if context_ids and len(context_ids) + len(prefix_ids) + len(suffix_ids) > total and len(context_ids) > total // 2:
            # The block is kept whole or dropped whole: cutting it per keystroke would cost its KV.
            truncated, context_ids = len(context_ids), []
        windows = total - len(context_ids)
        if len(prefix_ids) + len(suffix_ids) > windows:
            # Keep the text nearest the cursor. The prefix's head is dropped in coarse steps so
            # that, while the user types, the kept prompt stays the same and its KV reusable.
            keep_suffix = min(len(suffix_ids), max(windows - len(prefix_ids), windows // 4))
            drop = len(prefix_ids) - (windows - keep_suffix)
            drop = min(len(prefix_ids), -(-drop // step) * step)
            truncated += drop + len(suffix_ids) - keep_suffix
            prefix_ids, suffix_ids = prefix_ids[drop:], suffix_ids[:keep_suffix]
        return Prompt(
            token_ids=self.fim.layout(prefix_ids, suffix_ids, order, context_ids),  # type: ignore[arg-type]
            healed=healed,
            truncated_tokens=truncated,
            max_new_tokens=budget.max_new_tokens,
            context_tokens=len(context_ids),
        )
