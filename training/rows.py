"""Fixed-length training rows packed from samples, as a resumable, seeded stream.

Every row is exactly ``row_tokens`` long (the model's ``n_positions``), because GPTBigCode has
learned absolute position embeddings and each of them must be trained. A row holds one or more
whole samples: each sample is the next window of a document, cut to fit the room left in the
row, so samples never straddle rows (a FIM sample cut in two would teach the model a middle
without its prefix). Room too small for a useful sample (under ``MIN_SAMPLE_TOKENS``) is filled
with ``<fim-pad>``, whose labels are -100. With ``min_fim_tokens`` set, a FIM sample takes a
window of a length drawn uniformly between it and the room left, so a row holds about two FIM
samples instead of one: twice the middles (the part the benchmark scores) per trained token.

Batches must not come from one file: a 300 KB test module is 20 steps of consecutive windows,
and a model trained on such runs chases each file's statistics and never learns to use its
context (measured: loss stuck at 5.4 after 2 M tokens). So ``open_documents`` documents are
read at once, each sample taking its window from one of them drawn at random; a finished
document is replaced by the next in the epoch's order. Documents are shuffled every epoch
with a generator seeded by (seed, epoch). The state (epoch, order position, the open
documents' cursors and the sample RNG) round-trips through ``state_dict``, so a resumed run
sees exactly the rows it would have seen.
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
OPEN_DOCUMENTS = 256
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


@dataclass
class _Cursor:
    document: int  # index into the documents
    token: int = 0  # next token of the document
    char: int = 0  # character where that token starts


class RowStream:
    """An endless, seeded stream of packed rows over ``documents``."""

    def __init__(
        self,
        tokenizer,
        documents: Sequence[TokenizedDocument],
        row_tokens: int,
        seed: int,
        mix: SampleMix = SampleMix(),
        open_documents: int = OPEN_DOCUMENTS,
        min_fim_tokens: int = 0,
    ):
        if not documents:
            raise ValueError("no documents to train on")
        self.tokenizer = tokenizer
        self.ids = SpecialIds.from_tokenizer(tokenizer)
        self.documents = documents
        self.row_tokens = row_tokens
        self.seed = seed
        self.mix = mix
        self.min_fim_tokens = min_fim_tokens
        self.rng = random.Random(seed)
        self.epoch = 0
        self.position = 0  # next index into the epoch's document order
        self.order = self._shuffled_order()
        self.open: list[_Cursor] = []
        while len(self.open) < min(open_documents, len(documents)):
            self.open.append(self._next_cursor())

    def _shuffled_order(self) -> list[int]:
        order = list(range(len(self.documents)))
        random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        return order

    def _next_cursor(self) -> _Cursor:
        if self.position == len(self.order):
            self.epoch, self.position = self.epoch + 1, 0
            self.order = self._shuffled_order()
        self.position += 1
        return _Cursor(self.order[self.position - 1])

    def _next_sample(self, room_tokens: int) -> list[int]:
        """The next window of a randomly chosen open document as a sample of at most ``room_tokens``."""
        slot = self.rng.randrange(len(self.open))
        cursor = self.open[slot]
        document = self.documents[cursor.document]
        kind = self.mix.draw(self.rng)
        if kind != "plain" and MIN_SAMPLE_TOKENS <= self.min_fim_tokens < room_tokens:
            room_tokens = self.rng.randint(self.min_fim_tokens, room_tokens)
        budget = room_tokens - (FIM_OVERHEAD_TOKENS + FIM_SLACK_TOKENS if kind != "plain" else 1)
        last = min(cursor.token + budget, len(document.token_ends)) - 1
        end_char = int(document.token_ends[last])
        text = document.text[cursor.char : end_char]
        ends_document = last == len(document.token_ends) - 1
        sample = build_sample(self.tokenizer, self.ids, text, kind, self.rng, ends_document, self.mix.line_rate)
        cursor.token, cursor.char = last + 1, end_char
        if ends_document:
            self.open[slot] = self._next_cursor()
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
            "open": [(c.document, c.token, c.char) for c in self.open],
            "rng": self.rng.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self.open = [_Cursor(*fields) for fields in state["open"]]
        self.rng.setstate(state["rng"])
        self.order = self._shuffled_order()
