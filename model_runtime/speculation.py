"""Prompt-lookup drafts: guess the next tokens by finding the latest n-gram in what came before.

Code repeats its own context (names, call patterns, the rest of a line the user is retyping), so
the tokens that followed the last earlier occurrence of the sequence's final n-gram are a cheap
draft. A draft is only a guess: the decoder verifies it in one forward and keeps the part the
model agrees with, so a bad draft costs a slightly wider forward, never a different output.
"""

from __future__ import annotations

from typing import Sequence

MAX_NGRAM_TOKENS = 3
MIN_NGRAM_TOKENS = 1


def draft(sequence: Sequence[int], count: int, extra: Sequence[int] = (), max_ngram: int = MAX_NGRAM_TOKENS, min_ngram: int = MIN_NGRAM_TOKENS) -> list[int]:
    """Up to ``count`` ids that followed the latest earlier match of ``sequence``'s last n-gram.

    Longer n-grams are tried first (``max_ngram`` down to ``min_ngram``); within one length the
    match nearest the end wins. ``extra`` is searched first and with the same rule: another
    source of likely text (e.g. the previous suggestion for this document). Empty when nothing
    matches or ``count`` is 0.
    """
    if count <= 0 or len(sequence) < min_ngram:
        return []
    for n in range(min(max_ngram, len(sequence)), min_ngram - 1, -1):
        tail = list(sequence[-n:])
        first = tail[0]
        for source in (extra, sequence):
            # The latest start with source[start:start+n] == tail and at least one id after it
            # (in ``sequence`` that also keeps the tail from matching itself).
            for start in range(len(source) - n - 1, -1, -1):
                if source[start] == first and list(source[start : start + n]) == tail:
                    return list(source[start + n : start + n + count])
    return []


def continuation(held: Sequence[int], fed: Sequence[int], bytes_of: Sequence[bytes], id_of_bytes: dict[bytes, int], count: int) -> list[int]:
    """The draft for a user typing through the previous suggestion: up to ``count`` ids that spell
    what ``held`` spells past the bytes of ``fed``, when ``fed``'s bytes are a proper prefix of
    ``held``'s (else empty).

    ``held``: what the document's cache held past the reused part (the rest of the previous
    prompt and the suggestion generated after it); ``fed``: the new prompt's ids past the same
    point (and any generated since). Typing the suggestion's first characters makes the new
    prompt end inside one of its tokens: the rest of that token's bytes become one id (when the
    vocabulary has it; else no draft), then ``held``'s ids follow as they are. Special ids (no
    bytes) end ``held`` there.
    """
    typed = b"".join(bytes_of[token] for token in fed)
    if count <= 0 or not typed or any(not bytes_of[token] for token in fed):
        return []
    consumed = 0
    for index, token in enumerate(held):
        piece = bytes_of[token]
        if not piece:
            return []
        if consumed + len(piece) <= len(typed):
            if piece != typed[consumed : consumed + len(piece)]:
                return []
            consumed += len(piece)
            continue
        if not piece.startswith(typed[consumed:]):
            return []
        rest = piece[len(typed) - consumed :]
        head = token if len(typed) == consumed else id_of_bytes.get(rest)
        if head is None:
            return []
        out = [head]
        for following in held[index + 1 :]:
            if len(out) == count or not bytes_of[following]:
                break
            out.append(following)
        return out
    return []
