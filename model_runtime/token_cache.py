"""Tokenizing the text around the cursor once per keystroke without redoing all of it.

While the user types, the suffix window is the same string keystroke after keystroke and the
prefix window changes only in its last line. ``CachedTokenizer`` keeps the ids of recent texts
(an exact hit serves the suffix and the extra context) and, for a byte-level BPE tokenizer with
GPT-2's pre-tokenizer rules, splits a text at a line break that follows a non-space character:
no pre-token crosses such a point (the run before it ends at the non-space character, and a
whitespace run starts there), so the ids of the whole text are the ids of the head, kept from an
earlier keystroke, followed by the ids of the tail, and only the tail is tokenized again.

The split is used only when the tokenizer passes ``split_is_exact`` (its settings say byte-level
with GPT-2's pre-tokenizer regex and no normaliser, and a sample tokenizes the same split as
whole); other tokenizers get the exact-text cache alone.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

MIN_HEAD_CHARS = 256  # shorter texts are tokenized whole: splitting them saves nothing
ENTRIES = 32  # texts (whole texts and heads) kept

_SAMPLE = (
    "import os\n\n\ndef walk(top, *, follow=False):\n    for name in os.listdir(top):  # entries\n"
    "        path = os.path.join(top, name)\n\t\tif  os.path.isdir(path) :\n            yield from walk(path)\n"
    "x = 'it''s'   \n  \n\n    y = [1, 2.5e-3, 0x1F]\r\n    return {\"a\": b'\\n'}\n"
)  # fmt: skip


def split_point(text: str) -> int:
    """The last index ``i`` (at least ``MIN_HEAD_CHARS``) where ``text[i]`` is a line break and
    ``text[i - 1]`` is not whitespace; 0 when there is none."""
    index = len(text)
    while True:
        index = text.rfind("\n", MIN_HEAD_CHARS, index)
        if index <= 0:
            return 0
        if not text[index - 1].isspace():
            return index


def split_is_exact(tokenizer, encode: Callable[[str], list[int]]) -> bool:
    """Whether splitting at ``split_point``'s line breaks keeps ``tokenizer``'s ids unchanged."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.normalizer is not None:
        return False
    pre = backend.pre_tokenizer
    if pre is None or type(pre).__name__ != "ByteLevel" or not getattr(pre, "use_regex", False) or getattr(pre, "add_prefix_space", True):
        return False
    for cut in (i for i, c in enumerate(_SAMPLE) if c == "\n" and i and not _SAMPLE[i - 1].isspace()):
        if encode(_SAMPLE[:cut]) + encode(_SAMPLE[cut:]) != encode(_SAMPLE):
            return False
    return True


class CachedTokenizer:
    """``encode`` with the exact-text cache, and the head/tail split when ``split`` is on."""

    def __init__(self, encode: Callable[[str], list[int]], split: bool):
        self._encode = encode
        self.split = split
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self.hits = self.head_hits = 0  # exact-text hits, and head hits on a split (tests read them)

    def _lookup(self, text: str) -> list[int] | None:
        ids = self._cache.get(text)
        if ids is not None:
            self._cache.move_to_end(text)
        return ids

    def _store(self, text: str, ids: list[int]) -> None:
        self._cache[text] = ids
        if len(self._cache) > ENTRIES:
            self._cache.popitem(last=False)

    def __call__(self, text: str) -> list[int]:
        """The ids of ``text`` (a new list: callers may change it)."""
        ids = self._lookup(text)
        if ids is not None:
            self.hits += 1
            return list(ids)
        cut = split_point(text) if self.split else 0
        if cut:
            head_text = text[:cut]
            head = self._lookup(head_text)
            if head is None:
                head = self._encode(head_text)
                self._store(head_text, head)
            else:
                self.head_hits += 1
            ids = head + self._encode(text[cut:])
        else:
            ids = self._encode(text)
        self._store(text, ids)
        return list(ids)
