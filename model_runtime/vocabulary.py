"""Token ids as bytes: incremental detokenization, special ids, and prefix search for healing.

Byte-level BPE vocabularies (GPT-2 style, as in SantaCoder) spell each byte as one printable
character; we invert that spelling so a token's exact bytes are known even when it holds half
of a UTF-8 character. Special tokens have no bytes: they never reach returned text.
"""

from __future__ import annotations

import bisect
import codecs
from typing import Iterable, Sequence


def _byte_spelling() -> dict[str, int]:
    """Character -> byte for the byte-level BPE alphabet (printable bytes stand for themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    spelled = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            spelled[chr(256 + extra)] = b
            extra += 1
    return spelled


_SPELLING = _byte_spelling()


class TokenTable:
    """Immutable per-tokenizer tables. Built once at load time (O(vocab))."""

    def __init__(self, tokenizer, extra_stop_ids: Iterable[int] = ()):
        size = len(tokenizer)
        self.size = size  # models may pad their vocabulary beyond this; those ids are never sampled
        specials = set(tokenizer.all_special_ids)
        for token in tokenizer.get_added_vocab().values():
            specials.add(token)
        self.stop_ids = frozenset(specials | set(extra_stop_ids))
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        self.bytes_of: list[bytes] = []
        for token_id, piece in enumerate(pieces):
            if token_id in self.stop_ids or piece is None:
                self.bytes_of.append(b"")
            elif all(ch in _SPELLING for ch in piece):
                self.bytes_of.append(bytes(_SPELLING[ch] for ch in piece))
            else:  # not byte-level (e.g. sentencepiece): best effort through the tokenizer
                self.bytes_of.append(tokenizer.convert_tokens_to_string([piece]).encode("utf-8"))
        order = sorted((b, i) for i, b in enumerate(self.bytes_of) if b)
        self._sorted_bytes = [b for b, _ in order]
        self._sorted_ids = [i for _, i in order]
        self.id_of_bytes: dict[bytes, int] = {}
        for data, token_id in order:
            self.id_of_bytes.setdefault(data, token_id)  # duplicates (rare): the lowest id
        # Ids whose first byte is whitespace: barred right after healed indentation.
        self.ids_starting_with_whitespace: list[int] = sorted(i for w in b" \t\n\r\x0b\x0c" for i in self.ids_starting_with(bytes([w])))

    def ids_starting_with(self, prefix: bytes) -> list[int]:
        """All non-special ids whose bytes start with ``prefix`` (binary search, then a scan)."""
        lo = bisect.bisect_left(self._sorted_bytes, prefix)
        found = []
        for index in range(lo, len(self._sorted_bytes)):
            if not self._sorted_bytes[index].startswith(prefix):
                break
            found.append(self._sorted_ids[index])
        return found

    def text_of(self, ids: Sequence[int]) -> str:
        return b"".join(self.bytes_of[i] for i in ids).decode("utf-8", errors="replace")


class TextStream:
    """Turns generated ids into text incrementally, skipping the first ``skip_bytes`` bytes.

    The skipped bytes are the part of the prompt that token healing moved into the first
    generated token; they are already in the document and must not be returned again.
    """

    def __init__(self, table: TokenTable, skip_bytes: int = 0):
        self._table = table
        self._skip = skip_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""

    def push(self, token_id: int) -> str:
        data = self._table.bytes_of[token_id]
        if self._skip:
            dropped = min(self._skip, len(data))
            data, self._skip = data[dropped:], self._skip - dropped
        self.text += self._decoder.decode(data)
        return self.text
