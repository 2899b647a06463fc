"""Chunks of other files, and the one context block chosen from them for a request.

What is held: the chunks (``context_chunks``) of open documents, of documents closed recently
and of workspace files the current one imports (``workspace_files``), keyed by document and
text. Bounded in chunks (LRU), in bytes and in chunks per document; a chunk whose lines mostly
(Jaccard) repeat a held chunk is not added twice. Documents of a language without a known line
comment (``languages``) are not chunked: a chunk could not carry its path header.

What a request gets (``choose``): chunks of the same language family from *other* documents,
ranked by the identifiers they share with the cursor's window (weighted by rarity, three times
for a name the chunk defines), minus chunks whose lines the window already shows, greedily fit
into the token budget, then rendered in a stable order (path, then line) as
``{comment} {path}\\n{chunk lines}`` each. The choice is remembered per document and made again
only when its signature (the store's content for that family, the window's start, the budget,
and which of the window's identifiers occur in held chunks, so that typing a local name or half
a name changes nothing) changes, and even then the previous set is kept unless the new one
scores clearly better (``HYSTERESIS``): the block is the first text of the prompt, so while it
stays byte-identical its KV, and that of the windows after it, is reused.
Typing in a document never changes its own block: its own chunks are not candidates, and its
edits are re-chunked only when another document asks (at the start of ``choose``).

Everything runs on the event loop and is cheap: identifier sets and line hashes are computed
once per chunk, a request that changes nothing costs one signature comparison. Token counts of
chunks are memoized per chunk.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable

from .context_chunks import MAX_CHUNK_LINES, Chunk, chunk_key, definitions, display_path, identifiers, line_hashes, split_chunks
from .languages import language_family, language_of

MIN_HEAD_LINES = 3  # a chunk cut to fit keeps at least its first lines (a signature, a docstring)
MIN_HEAD_TOKENS = 16  # less room than this left: the block is full
MAX_RANKED_CHUNKS = 24  # chunks tried for the budget, best first (each costs a token count)
COMMON_LINE_CHUNKS = 16  # a line held in more chunks than this is boilerplate
DUPLICATE_JACCARD = 0.7  # a chunk sharing this share of its lines with a held one is a duplicate
SHOWN_FRACTION = 0.5  # a chunk with this share of its lines in the window adds nothing
HYSTERESIS = 1.3  # a new set must score this many times the kept set's score to replace it
DEFINITION_WEIGHT = 3.0  # a chunk that defines a name the window uses beats one that uses it too
MAX_DOCUMENT_BYTES = 1 << 20  # larger documents are not chunked (generated files, logs)


@dataclass(frozen=True)
class ContextBlock:
    """The extra context of one request: ``text`` goes before the FIM layout as it is."""

    text: str = ""
    tokens: int = 0  # tokens of ``text`` counted whole, as the runtime will
    keys: tuple[Hashable, ...] = ()


@dataclass
class _Choice:
    signature: Hashable
    block: ContextBlock


@dataclass
class _Document:
    language_id: str
    is_open: bool
    focus_line: int = 0  # last edited or viewed line: the per-document cap keeps chunks near it
    keys: list[Hashable] = field(default_factory=list)  # its held chunks, in document order


class ContextStore:
    """Owned by the event loop. ``read_open(uri)`` returns an open document's current text
    (the server's document store); the store asks for it only when re-chunking."""

    def __init__(
        self,
        read_open: Callable[[str], str | None] = lambda uri: None,
        *,
        max_chunks: int = 512,
        max_bytes: int = 2 << 20,
        max_chunks_per_document: int = 96,
        roots: tuple[str, ...] = (),
    ):
        self.read_open = read_open
        self.max_chunks, self.max_bytes, self.max_chunks_per_document = max_chunks, max_bytes, max_chunks_per_document
        self.roots = roots  # workspace folder paths, for headers
        self._chunks: OrderedDict[Hashable, Chunk] = OrderedDict()  # least recently used first
        self._by_hash: dict[int, set[Hashable]] = {}
        self._documents: dict[str, _Document] = {}
        self._dirty: set[str] = set()
        self._postings: dict[str, set[Hashable]] = {}  # identifier -> the held chunks that use it
        self._generation: Counter[str] = Counter()  # per language family: bumped on every add/remove
        self._nbytes = 0
        self._tokens: dict[Hashable, dict[int, int]] = {}  # chunk key -> lines kept -> tokens
        self._choices: dict[str, _Choice] = {}

    # -- feeding -----------------------------------------------------------------------------
    def opened(self, uri: str, language_id: str, text: str) -> None:
        self._documents[uri] = _Document(language_id, True, self._documents.get(uri, _Document(language_id, True)).focus_line)
        self._rechunk(uri, text)

    def changed(self, uri: str, line: int | None = None) -> None:
        """An open document changed (at ``line``, when known): re-chunked when another asks."""
        document = self._documents.get(uri)
        if document is None:
            return
        if line is not None:
            document.focus_line = line
        self._dirty.add(uri)

    def viewed(self, uri: str, line: int) -> None:
        """The cursor is at ``line``: its chunk counts as recently used."""
        document = self._documents.get(uri)
        if document is None:
            return
        document.focus_line = line
        for key in document.keys:
            chunk = self._chunks.get(key)
            if chunk is not None and chunk.first_line <= line < chunk.first_line + MAX_CHUNK_LINES:
                self._chunks.move_to_end(key)

    def closed(self, uri: str, text: str | None) -> None:
        """Its chunks stay (a document closed recently) until evicted."""
        document = self._documents.get(uri)
        if document is None:
            return
        if text is not None and uri in self._dirty:
            self._rechunk(uri, text)
        self._dirty.discard(uri)
        document.is_open = False
        self._choices.pop(uri, None)

    def add_file(self, uri: str, language_id: str, text: str) -> bool:
        """A workspace file that no editor has open (an import). Ignored when held already."""
        if uri in self._documents:
            return False
        self._documents[uri] = _Document(language_id, False)
        self._rechunk(uri, text)
        return True

    def holds(self, uri: str) -> bool:
        return uri in self._documents

    def _rechunk(self, uri: str, text: str) -> None:
        document = self._documents[uri]
        self._dirty.discard(uri)
        pieces = [] if language_of(document.language_id).comment_prefix is None or len(text) > MAX_DOCUMENT_BYTES else split_chunks(text)
        if len(pieces) > self.max_chunks_per_document:  # keep those nearest the last edit or view
            pieces = sorted(pieces, key=lambda piece: abs(piece[0] - document.focus_line))[: self.max_chunks_per_document]
            pieces.sort()
        fresh = []
        for line, piece in pieces:  # a chunk held already (same text) is not analysed again
            key = chunk_key(uri, piece)
            held = self._chunks.get(key)
            if held is not None:
                held.first_line = line
            hashes = held.hashes if held is not None else line_hashes(piece)
            if len(hashes) >= 3:
                fresh.append(held or Chunk(uri, document.language_id, line, piece, hashes, identifiers(piece), key, definitions(piece)))
        wanted = {chunk.key for chunk in fresh}
        for key in document.keys:
            if key not in wanted:
                self._remove(key)
        document.keys = []
        for chunk in fresh:
            if chunk.key in document.keys:
                continue  # the same text twice in one document
            if chunk.key in self._chunks:
                document.keys.append(chunk.key)
            elif self._add(chunk):
                document.keys.append(chunk.key)
        # Most recently used last: the chunks nearest the last edit or view are evicted last.
        for key in sorted(document.keys, key=lambda k: -abs(self._chunks[k].first_line - document.focus_line)):
            self._chunks.move_to_end(key)
        self._evict()

    def _add(self, chunk: Chunk) -> bool:
        """Hold ``chunk`` unless a held chunk repeats most of its lines (that one is refreshed)."""
        shared: Counter[Hashable] = Counter()
        for value in chunk.hashes:
            keys = self._by_hash.get(value, ())
            if len(keys) <= COMMON_LINE_CHUNKS:  # boilerplate lines ("return None") say nothing of duplication
                for key in keys:
                    shared[key] += 1
        for key, count in shared.items():
            other = self._chunks[key]
            if count / (len(chunk.hashes) + len(other.hashes) - count) >= DUPLICATE_JACCARD:
                self._chunks.move_to_end(key)
                return False
        self._chunks[chunk.key] = chunk
        for value in chunk.hashes:
            self._by_hash.setdefault(value, set()).add(chunk.key)
        for word in chunk.words:
            self._postings.setdefault(word, set()).add(chunk.key)
        self._nbytes += chunk.nbytes
        self._generation[language_family(chunk.language_id)] += 1
        return True

    def _remove(self, key: Hashable) -> None:
        chunk = self._chunks.pop(key, None)
        if chunk is None:
            return
        for value in chunk.hashes:
            keys = self._by_hash.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_hash[value]
        for word in chunk.words:
            keys = self._postings.get(word)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._postings[word]
        self._nbytes -= chunk.nbytes
        self._tokens.pop(key, None)
        self._generation[language_family(chunk.language_id)] += 1

    def _evict(self) -> None:
        while self._chunks and (len(self._chunks) > self.max_chunks or self._nbytes > self.max_bytes):
            key = next(iter(self._chunks))
            uri = self._chunks[key].uri
            self._remove(key)
            document = self._documents.get(uri)
            if document is not None:
                document.keys = [k for k in document.keys if k != key]
                if not document.keys and not document.is_open:
                    del self._documents[uri]

    # -- choosing ----------------------------------------------------------------------------
    def language_of(self, uri: str) -> str | None:
        document = self._documents.get(uri)
        return document.language_id if document is not None else None

    def has_candidates(self, uri: str) -> bool:
        """Whether a request in ``uri`` could get any context (same language, another document)."""
        language = self.language_of(uri)
        if language is None or language_of(language).comment_prefix is None:
            return False
        family = language_family(language)
        return any(
            other != uri and language_family(document.language_id) == family and (document.keys or other in self._dirty)
            for other, document in self._documents.items()
        )

    def choose(
        self, uri: str, window_text: str, window_start: int, cursor_line: int, budget_tokens: int, count_tokens: Callable[[str], int]
    ) -> ContextBlock:
        """The block for a request at ``cursor_line`` of ``uri`` whose windows (prefix + suffix)
        are ``window_text``, starting at document offset ``window_start``. See the module doc."""
        language = self.language_of(uri)
        comment = language_of(language).comment_prefix
        if language is None or comment is None or budget_tokens <= 0:
            return ContextBlock()
        for other in [d for d in self._dirty if d != uri]:
            text = self.read_open(other)
            if text is not None:
                self._rechunk(other, text)
            else:
                self._dirty.discard(other)
        self.viewed(uri, cursor_line)
        family = language_family(language)
        words = identifiers(window_text)
        known = frozenset(word for word in words if word in self._postings)  # what can rank a chunk
        signature = (self._generation[family], window_start, known, budget_tokens)
        previous = self._choices.get(uri)
        if previous is not None and previous.signature == signature:
            return previous.block
        scores = self._scores(uri, family, known, line_hashes(window_text))
        ranked = sorted(scores, key=lambda key: (-scores[key], key))
        chosen = self._fit(ranked, comment, budget_tokens, count_tokens)
        block = self._render(chosen, comment, count_tokens)
        while block.tokens > budget_tokens and chosen:  # the whole text may tokenize longer than its parts
            chosen.pop()
            block = self._render(chosen, comment, count_tokens)
        if previous is not None and previous.block.tokens <= budget_tokens and all(key in scores for key in previous.block.keys):
            # Keep the bytes of the previous block unless the new set is clearly better (or it was empty).
            kept = sum(scores[key] for key in previous.block.keys)
            if (previous.block.keys or not block.keys) and kept * HYSTERESIS >= sum(scores[key] for key in block.keys):
                block = previous.block
        self._choices[uri] = _Choice(signature, block)
        return block

    def _scores(self, uri: str, family: str, words: frozenset[str], shown: frozenset[int]) -> dict[Hashable, float]:
        """Relevance of each candidate chunk: the identifiers (``words``) it shares with the
        window, each weighted by its rarity (an identifier in over a quarter of the chunks says
        nothing and is skipped). Chunks whose lines the window already shows are left out.
        Walks the postings of the window's identifiers, not every held chunk."""
        total = max(1, len(self._chunks))

        def weight_of(word: str) -> float:
            keys = self._postings.get(word, ())
            return 0.0 if not keys or (len(keys) * 4 > total and total >= 8) else math.log(1 + total / len(keys))

        raw: dict[Hashable, float] = {}
        for word in words:
            weight = weight_of(word)
            if weight:
                for key in self._postings[word]:
                    raw[key] = raw.get(key, 0.0) + weight
        scores: dict[Hashable, float] = {}
        for key, score in raw.items():
            chunk = self._chunks[key]
            if chunk.uri == uri or language_family(chunk.language_id) != family:
                continue
            if len(chunk.hashes & shown) >= SHOWN_FRACTION * len(chunk.hashes):
                continue
            scores[key] = score + (DEFINITION_WEIGHT - 1) * sum(weight_of(word) for word in words & chunk.defines)
        return scores

    def _head_tokens(self, chunk: Chunk, lines: int, comment: str, count_tokens: Callable[[str], int]) -> int:
        """Tokens of the chunk's first ``lines`` lines with their header (memoized per chunk)."""
        counted = self._tokens.setdefault(chunk.key, {})
        tokens = counted.get(lines)
        if tokens is None:
            tokens = counted[lines] = count_tokens(self._render_chunk(chunk, comment, lines))
        return tokens

    def _fit(
        self, ranked: list[Hashable], comment: str, budget_tokens: int, count_tokens: Callable[[str], int]
    ) -> list[tuple[Chunk, int, int]]:
        """(chunk, lines kept, tokens) in rank order within the budget. A chunk that does not fit
        whole gives its head (its signature and first lines) if at least ``MIN_HEAD_LINES`` fit."""
        chosen, used = [], 0
        for key in ranked[:MAX_RANKED_CHUNKS]:
            chunk = self._chunks[key]
            total_lines = chunk.text.count("\n")
            tokens = self._head_tokens(chunk, total_lines, comment, count_tokens)
            lines = total_lines
            if used + tokens > budget_tokens:
                low, high = 0, total_lines - 1  # the most lines whose head fits
                while low < high:
                    middle = (low + high + 1) // 2
                    if used + self._head_tokens(chunk, middle, comment, count_tokens) <= budget_tokens:
                        low = middle
                    else:
                        high = middle - 1
                if low < MIN_HEAD_LINES:
                    continue
                lines, tokens = low, self._head_tokens(chunk, low, comment, count_tokens)
            chosen.append((chunk, lines, tokens))
            used += tokens
            if budget_tokens - used < MIN_HEAD_TOKENS:
                break
        return chosen

    def _render_chunk(self, chunk: Chunk, comment: str, lines: int | None = None) -> str:
        text = chunk.text if lines is None else "".join(chunk.text.splitlines(keepends=True)[:lines])
        return f"{comment} {display_path(chunk.uri, self.roots)}\n{text}"

    def _render(self, chosen: list[tuple[Chunk, int, int]], comment: str, count_tokens: Callable[[str], int]) -> ContextBlock:
        """The block's text in a stable order (path, line); its tokens counted whole, once a choice."""
        ordered = sorted(chosen, key=lambda item: (display_path(item[0].uri, self.roots), item[0].first_line, item[0].key))
        text = "".join(self._render_chunk(chunk, comment, lines) for chunk, lines, _ in ordered)
        return ContextBlock(text, count_tokens(text) if text else 0, tuple(chunk.key for chunk, _, _ in ordered))

    # -- introspection -------------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        return {"contextChunks": len(self._chunks), "contextBytes": self._nbytes, "contextDocuments": len(self._documents)}

    def chunks(self) -> list[Chunk]:
        return list(self._chunks.values())
