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
with a generator seeded by (seed, epoch). The same document may appear several times in the
list (the standard library is up-weighted that way, ``train.py``). The state (epoch, order position, the open
documents' cursors and the sample RNG) round-trips through ``state_dict``, so a resumed run
sees exactly the rows it would have seen.

With ``mix.context_rate`` set, that share of FIM samples gets related-file chunks in front
(``samples.format_context_chunk``): one to ``MAX_CONTEXT_CHUNKS`` windows of
``CONTEXT_CHUNK_LINES`` lines from other documents of the same source and folder (or, for a
file alone in its folder, of the same top-level package), within ``CONTEXT_SHARE`` of the room.
"""

from __future__ import annotations

import posixpath
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .corpus import Document
from .samples import FIM_OVERHEAD_TOKENS, SampleMix, SpecialIds, build_sample, encode_text, format_context_chunk

MIN_SAMPLE_TOKENS = 64
OPEN_DOCUMENTS = 256
# Tokenizing three pieces separately can take a few more tokens than the whole window.
FIM_SLACK_TOKENS = 8
IGNORE_INDEX = -100
MAX_CONTEXT_CHUNKS = 3
CONTEXT_CHUNK_LINES = (20, 60)  # a chunk's length in lines is drawn from this range
CONTEXT_SHARE = 0.5  # the context takes at most this share of a sample's room
MIN_CONTEXT_TOKENS = 32


@dataclass(frozen=True)
class TokenizedDocument:
    text: str
    token_ends: np.ndarray  # [n_tokens] int32: character offset where each token ends
    path: str = ""  # relative path inside its source (the context chunks' header)
    source: str = ""


def index_documents(tokenizer, documents: Sequence[Document], batch_size: int = 64) -> list[TokenizedDocument]:
    """Tokenize every document once, keeping only where tokens end (used to cut windows)."""
    backend = tokenizer.backend_tokenizer
    indexed = []
    for start in range(0, len(documents), batch_size):
        batch = documents[start : start + batch_size]
        encodings = backend.encode_batch([document.text for document in batch], add_special_tokens=False)
        for document, encoding in zip(batch, encodings):
            ends = np.fromiter((end for _, end in encoding.offsets), dtype=np.int32, count=len(encoding.offsets))
            if len(ends):
                ends[-1] = len(document.text)
                indexed.append(TokenizedDocument(document.text, ends, document.path, document.source))
    return indexed


def token_ends_of(tokenizer, text: str) -> np.ndarray:
    """[n_tokens] int32: the character offset where each token of ``text`` ends (the last is ``len(text)``)."""
    encoding = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    ends = np.fromiter((end for _, end in encoding.offsets), dtype=np.int32, count=len(encoding.offsets))
    if len(ends):
        ends[-1] = len(text)
    return ends


def related_documents(documents: Sequence[TokenizedDocument | Document]) -> list[tuple[list[int], int]]:
    """Per document: (its group, its own position in it), the group being the indices of the documents
    of its source and folder, or of its top-level package when it is alone in its folder.

    Groups are shared lists (a folder of n files costs n entries, not n squared); copies of one
    document (the same source and path) share one index, so they are never each other's relatives.
    """
    by_folder: dict[tuple[str, str], list[int]] = {}
    by_package: dict[tuple[str, str], list[int]] = {}
    first_copy: dict[tuple[str, str], int] = {}
    for index, document in enumerate(documents):
        key = (document.source, document.path)
        if key in first_copy:
            continue
        first_copy[key] = index
        by_folder.setdefault((document.source, posixpath.dirname(document.path)), []).append(index)
        by_package.setdefault((document.source, document.path.split("/", 1)[0]), []).append(index)
    position = {id(group): {index: at for at, index in enumerate(group)} for group in (*by_folder.values(), *by_package.values())}
    related = []
    for document in documents:
        group = by_folder[(document.source, posixpath.dirname(document.path))]
        if len(group) < 2:
            group = by_package[(document.source, document.path.split("/", 1)[0])]
        related.append((group, position[id(group)][first_copy[(document.source, document.path)]]))
    return related


@dataclass
class _Cursor:
    document: int  # index into the documents
    token: int = 0  # next token of the document
    char: int = 0  # character where that token starts


class RowStream:
    """An endless, seeded stream of packed rows over ``documents``.

    ``documents`` are ``TokenizedDocument`` (indexed up front) or plain ``Document``: those are
    tokenized when they are opened and forgotten when finished, so a corpus of hundreds of
    millions of characters starts training at once (a run on a CPU opens only a few thousand).
    """

    def __init__(
        self,
        tokenizer,
        documents: Sequence[TokenizedDocument | Document],
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
        self._ends: dict[int, np.ndarray] = {}  # token ends of the open plain documents
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
        self.related = related_documents(documents) if mix.context_rate > 0 else None

    def _shuffled_order(self) -> list[int]:
        order = list(range(len(self.documents)))
        random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        return order

    def _next_cursor(self) -> _Cursor:
        while True:
            if self.position == len(self.order):
                self.epoch, self.position = self.epoch + 1, 0
                self.order = self._shuffled_order()
            self.position += 1
            cursor = _Cursor(self.order[self.position - 1])
            if len(self._token_ends(cursor.document)):
                return cursor

    def _token_ends(self, index: int) -> np.ndarray:
        document = self.documents[index]
        ends = getattr(document, "token_ends", None)
        if ends is None:
            ends = self._ends.get(index)
            if ends is None:
                ends = self._ends[index] = token_ends_of(self.tokenizer, document.text)
        return ends

    def _context_ids(self, document: int, budget_tokens: int) -> list[int]:
        """Token ids of related-file chunks (``format_context_chunk`` each) within ``budget_tokens``."""
        group, own = self.related[document] if self.related else ([], -1)
        context: list[int] = []
        for _ in range(self.rng.randint(1, MAX_CONTEXT_CHUNKS) if len(group) > 1 else 0):
            pick = self.rng.randrange(len(group) - 1)  # uniform over the group without ``own``
            other = self.documents[group[pick + (pick >= own)]]
            lines = other.text.split("\n")
            length = self.rng.randint(*CONTEXT_CHUNK_LINES)
            first = self.rng.randrange(max(1, len(lines) - length + 1))
            chunk_lines = lines[first : first + length]
            room = budget_tokens - len(context)
            while chunk_lines:
                ids = encode_text(self.tokenizer, format_context_chunk(other.path, "\n".join(chunk_lines)))
                if len(ids) <= room:
                    break
                chunk_lines = chunk_lines[: max(0, min(len(chunk_lines) - 1, len(chunk_lines) * room // len(ids)))]
            if not chunk_lines:
                break
            context += ids
        return context

    def _next_sample(self, room_tokens: int) -> list[int]:
        """The next window of a randomly chosen open document as a sample of at most ``room_tokens``."""
        slot = self.rng.randrange(len(self.open))
        cursor = self.open[slot]
        document = self.documents[cursor.document]
        token_ends = self._token_ends(cursor.document)
        kind = self.mix.draw(self.rng)
        if kind != "plain" and MIN_SAMPLE_TOKENS <= self.min_fim_tokens < room_tokens:
            room_tokens = self.rng.randint(self.min_fim_tokens, room_tokens)
        context: list[int] = []
        if kind != "plain" and self.mix.context_rate > 0 and self.rng.random() < self.mix.context_rate:
            context_budget = int(room_tokens * CONTEXT_SHARE)
            if context_budget >= MIN_CONTEXT_TOKENS:
                context = self._context_ids(cursor.document, context_budget)
        budget = room_tokens - len(context) - (FIM_OVERHEAD_TOKENS + FIM_SLACK_TOKENS if kind != "plain" else 1)
        last = min(cursor.token + budget, len(token_ends)) - 1
        end_char = int(token_ends[last])
        text = document.text[cursor.char : end_char]
        ends_document = last == len(token_ends) - 1
        sample = build_sample(
            self.tokenizer, self.ids, text, kind, self.rng, ends_document, self.mix.line_rate,
            self.mix.rest_of_line_rate, context,
        )
        cursor.token, cursor.char = last + 1, end_char
        if ends_document:
            self._ends.pop(cursor.document, None)
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
        self._ends = {}
        self.rng.setstate(state["rng"])
        self.order = self._shuffled_order()
