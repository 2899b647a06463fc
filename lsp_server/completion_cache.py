"""Two caches in front of the model.

- Exact: finished suggestions keyed by everything that decides them: the model and its load
  options, the prompt windows, the mode and the stop-rule inputs. Greedy decoding makes the
  same key give the same text, so a hit is as good as a model call (undo, cursor moves back).
- Typed-through: the last suggestion shown per document. When the user types characters that
  start that suggestion (and nothing else changed), the rest of it is the answer.

Both are touched only on the event loop; no lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

from cachetools import LRUCache


@dataclass(frozen=True)
class ShownSuggestion:
    suggestion_id: str
    before: str  # text before the cursor when it was shown (of the excerpt the completer had)
    after: str  # text after the cursor (of that excerpt)
    text: str  # the suggestion, as inserted
    model_key: Hashable
    base: int = 0  # document offset of ``before``'s first character
    document_chars: int = -1  # the document's length then; -1: before + after is the document


class CompletionCache:
    def __init__(self, exact_entries: int = 512, documents: int = 64):
        self._exact: LRUCache[Hashable, str] = LRUCache(maxsize=exact_entries)
        self._shown: LRUCache[str, ShownSuggestion] = LRUCache(maxsize=documents)

    def usage(self) -> dict[str, int]:
        """Entries held and their limits, for ``santacoder/stats``."""
        return {
            "exactEntries": len(self._exact), "exactCapacity": int(self._exact.maxsize),
            "shownDocuments": len(self._shown), "shownCapacity": int(self._shown.maxsize),
        }  # fmt: skip

    # -- exact -------------------------------------------------------------------------------
    def get(self, key: Hashable) -> str | None:
        return self._exact.get(key)

    def put(self, key: Hashable, text: str) -> None:
        self._exact[key] = text

    # -- typed-through -----------------------------------------------------------------------
    def remember(self, uri: str, shown: ShownSuggestion) -> None:
        self._shown[uri] = shown

    def forget(self, uri: str) -> None:
        self._shown.pop(uri, None)

    def typed_through(
        self, uri: str, text: str, offset: int, model_key: Hashable, base: int = 0, document_chars: int | None = None
    ) -> tuple[ShownSuggestion, str] | None:
        """(the shown suggestion, what is left of it) if, since it was shown, the user only typed
        its first characters at the cursor; ``None`` otherwise (also when nothing is left).
        ``text`` is the document or an excerpt of it starting at document offset ``base``
        (``document_chars`` long in all); "nothing else changed" is checked on the text both
        excerpts hold (which holds every window the model sees) and on the document's length."""
        shown = self._shown.get(uri)
        if shown is None or shown.model_key != model_key:
            return None
        chars = len(text) if document_chars is None else document_chars
        shown_chars = len(shown.before) + len(shown.after) if shown.document_chars < 0 else shown.document_chars
        shown_cursor = shown.base + len(shown.before)
        typed_chars = base + offset - shown_cursor
        if typed_chars <= 0 or chars != shown_chars + typed_chars or shown_cursor < base:
            return None
        typed = text[shown_cursor - base : offset]
        if not shown.text.startswith(typed) or len(typed) >= len(shown.text):
            return None
        common = max(base, shown.base)
        after_chars = min(len(text) - offset, len(shown.after))
        if text[common - base : shown_cursor - base] != shown.before[common - shown.base :]:
            return None
        if text[offset : offset + after_chars] != shown.after[:after_chars]:
            return None
        return shown, shown.text[len(typed) :]
