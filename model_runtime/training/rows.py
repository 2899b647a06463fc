"""Fixed-length training rows packed from samples, as a resumable, seeded stream.

Every row is exactly ``row_tokens`` long (the model's ``n_positions``), because GPTBigCode has
learned absolute position embeddings and each of them must be trained. A row holds one or more
whole samples: the stream walks the shuffled documents with a token cursor and cuts the next
window of a document to fit the room left in the row, so samples never straddle rows (a FIM
sample cut in two would teach the model a middle without its prefix). Room too small for a
useful sample (under ``MIN_SAMPLE_TOKENS``) is filled with ``<fim-pad>``, whose labels are -100.

Documents are shuffled again every epoch with a generator seeded by (seed, epoch). The state
(epoch, document position, cursors and the sample RNG) round-trips through ``state_dict``,
so a resumed run sees exactly the rows it would have seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .corpus import Document
from .samples import FIM_OVERHEAD_TOKENS, SampleMix, SpecialIds, build_sample

MIN_SAMPLE_TOKENS = 64
# Tokenizing three pieces separately can take a few more tokens than the whole window.
FIM_SLACK_TOKENS = 8
IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedDocument:
    text: str
    token_ends: np.ndarray  # [n_tokens] int32: character offset where each token ends


def index_documents(tokenizer, documents: Sequence[Document], batch_size: int = 64) -> list[TokenizedDocument]:
    """Tokenize every document once, keeping only where tokens end (used to cut windows)."""
    backend = tokenizer.backend_tokenizer
    indexed = []
    for start in range(0, len(documents), batch_size):
        texts = [document.text for document in documents[start : start + batch_size]]
        for text, encoding in zip(texts, backend.encode_batch(texts, add_special_tokens=False)):
            ends = np.fromiter((end for _, end in encoding.offsets), dtype=np.int32, count=len(encoding.offsets))
            if len(ends):
                ends[-1] = len(text)
                indexed.append(TokenizedDocument(text, ends))
    return indexed


class RowStream:
    """An endless, seeded stream of packed rows over ``documents``."""

    def __init__(
        self,
        tokenizer,
        documents: Sequence[TokenizedDocument],
        row_tokens: int,
        seed: int,
        mix: SampleMix = SampleMix(),
    ):
        if not documents:
            raise ValueError("no documents to train on")
        self.tokenizer = tokenizer
        self.ids = SpecialIds.from_tokenizer(tokenizer)
        self.documents = documents
        self.row_tokens = row_tokens
        self.seed = seed
        self.mix = mix
        self.rng = random.Random(seed)
        self.epoch = 0
        self.position = 0  # index into the epoch's document order
        self.token_cursor = 0  # next token of the current document
        self.char_cursor = 0  # character where that token starts
        self.order = self._shuffled_order()

    def _shuffled_order(self) -> list[int]:
        order = list(range(len(self.documents)))
        random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        return order

    def _advance_document(self) -> None:
        self.position += 1
        self.token_cursor = self.char_cursor = 0
        if self.position == len(self.order):
            self.epoch, self.position = self.epoch + 1, 0
            self.order = self._shuffled_order()

    def _next_sample(self, room_tokens: int) -> list[int]:
        """The next sample cut from the current document, at most ``room_tokens`` long."""
        document = self.documents[self.order[self.position]]
        kind = self.mix.draw(self.rng)
        budget = room_tokens - (FIM_OVERHEAD_TOKENS + FIM_SLACK_TOKENS if kind != "plain" else 1)
        last = min(self.token_cursor + budget, len(document.token_ends)) - 1
        end_char = int(document.token_ends[last])
        text = document.text[self.char_cursor : end_char]
        ends_document = last == len(document.token_ends) - 1
        sample = build_sample(self.tokenizer, self.ids, text, kind, self.rng, ends_document)
        self.token_cursor, self.char_cursor = last + 1, end_char
        if ends_document:
            self._advance_document()
        return sample[:room_tokens]

    def next_row(self) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one row of exactly ``row_tokens``; padding is labelled -100."""
        row: list[int] = []
        while self.row_tokens - len(row) >= MIN_SAMPLE_TOKENS:
            row += self._next_sample(self.row_tokens - len(row))
        labels = row + [IGNORE_INDEX] * (self.row_tokens - len(row))
        row += [self.ids.fim_pad] * (self.row_tokens - len(row))
        return row, labels

    def next_batch(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids, labels), each [rows, row_tokens] int64."""
        pairs = [self.next_row() for _ in range(rows)]
        input_ids = torch.tensor([pair[0] for pair in pairs], dtype=torch.long)  # [B, T]
        labels = torch.tensor([pair[1] for pair in pairs], dtype=torch.long)  # [B, T]
        return input_ids, labels

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "token_cursor": self.token_cursor,
            "char_cursor": self.char_cursor,
            "rng": self.rng.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self.token_cursor, self.char_cursor = state["token_cursor"], state["char_cursor"]
        self.rng.setstate(state["rng"])
        self.order = self._shuffled_order()
