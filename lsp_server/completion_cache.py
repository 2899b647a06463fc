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
    before: str  # document text before the cursor when it was shown
    after: str  # document text after the cursor
    text: str  # the suggestion, as inserted
    model_key: Hashable


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

    def shown(self, uri: str) -> ShownSuggestion | None:
        return self._shown.get(uri)

    def typed_through(self, uri: str, text: str, offset: int, model_key: Hashable) -> tuple[ShownSuggestion, str] | None:
        """(the shown suggestion, what is left of it) if, since it was shown, the user only typed
        its first characters at the cursor; ``None`` otherwise (also when nothing is left)."""
        shown = self._shown.get(uri)
        if shown is None or shown.model_key != model_key:
            return None
        typed_chars = offset - len(shown.before)
        if typed_chars <= 0 or len(text) != len(shown.before) + typed_chars + len(shown.after):
            return None
        typed = text[len(shown.before) : offset]
        if not shown.text.startswith(typed) or len(typed) >= len(shown.text):
            return None
        if not (text.startswith(shown.before) and text.endswith(shown.after)):
            return None
        return shown, shown.text[len(typed) :]
