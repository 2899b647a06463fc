"""Training samples: plain left-to-right and fill-in-the-middle, laid out as the runtime prompts.

A FIM sample splits a text into prefix P, middle M and suffix S, either at two uniformly random
character positions (SantaCoder's objective; the cursor can be anywhere while typing) or, for a
``line_rate`` share of FIM samples, around one to three whole lines: P ends with the newline
before them, M is the lines without their last newline, S starts with that newline (the cursor
at the start of a line, as in the single-line infilling benchmark). A 4 M model trained on
random splits alone for 6 M tokens almost never completed a line at line start (exact match
0.001), because a random middle is on average a third of the window and rarely starts at a line
start. The three pieces are tokenized separately, as the runtime tokenizes its prefix and
suffix separately: a split point inside what would be one token then looks in training as it
does when serving. They are laid out by ``model_runtime.fim.FimTokens.layout``, followed by
the middle and end of text:

    PSM: <fim-prefix> P <fim-suffix> S <fim-middle> M <|endoftext|>
    SPM: <fim-prefix> <fim-suffix> S <fim-middle> P M <|endoftext|>   (SantaCoder's SPM variant)
    plain: T, plus <|endoftext|> only when T ends its document

A ``rest_of_line_rate`` share of those line-aligned middles starts inside its line instead
(``split_rest_of_line``): the cursor sits after some typed characters of the line and the middle
is the rest of it, up to the line's end (the server's usual request while typing).

A ``context_rate`` share of FIM samples carries chunks of related files in front of the
sentinels, as the server sends its extra context (``FimTokens.layout(..., context_ids=...)``):
the context text is, per chunk, ``# {relative path}\n{chunk text ending with a newline}``
(``format_context_chunk``), the chunks concatenated; the row stream picks them from other files
of the same folder (or package).

Text is encoded with ``split_special_tokens=True``: a literal ``<fim-prefix>`` inside a
source file becomes ordinary text tokens, never a special id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Sequence

from model_runtime.api import FimOrder
from model_runtime.fim import FimTokens

from .tokenizer import END_OF_TEXT, FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SUFFIX

SampleKind = Literal["plain", "psm", "spm"]
SAMPLE_KINDS: tuple[SampleKind, ...] = ("plain", "psm", "spm")
FIM_OVERHEAD_TOKENS = 4  # three sentinels and the end of text


@dataclass(frozen=True)
class SpecialIds:
    end_of_text: int
    fim_prefix: int
    fim_middle: int
    fim_suffix: int
    fim_pad: int

    @property
    def fim(self) -> FimTokens:
        return FimTokens(self.fim_prefix, self.fim_middle, self.fim_suffix, (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX))

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SpecialIds":
        ids = tokenizer.convert_tokens_to_ids([END_OF_TEXT, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD])
        return cls(*ids)


@dataclass(frozen=True)
class SampleMix:
    """Probabilities of each sample kind, and of each kind of FIM middle.

    Default: 10% plain, 25% PSM, 65% SPM. The runtime always prompts in a FIM layout (the server
    in SPM, which scored several times PSM's exact match on this model), and FIM samples still
    teach left-to-right prediction over their prefix and suffix spans (Bavarian et al. 2022 found
    high FIM rates cost little left-to-right quality). PSM stays in the mix so that PSM prompts
    (a setting) keep working.
    """

    plain: float = 0.1
    psm: float = 0.25
    spm: float = 0.65
    line_rate: float = 0.0  # share of FIM samples whose middle is line-aligned (``split_at_lines``)
    rest_of_line_rate: float = 0.0  # share of those that start inside the line (``split_rest_of_line``)
    context_rate: float = 0.0  # share of FIM samples with related-file chunks in front (rows.py)

    def draw(self, rng: random.Random) -> SampleKind:
        return rng.choices(SAMPLE_KINDS, weights=(self.plain, self.psm, self.spm))[0]


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added and none recognised inside it."""
    if not text:
        return []
    return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


def split_at_random(text: str, rng: random.Random) -> tuple[str, str, str]:
    """(prefix, middle, suffix) cut at two uniform character positions in [0, len(text)]."""
    first, second = sorted(rng.randint(0, len(text)) for _ in range(2))
    return text[:first], text[first:second], text[second:]


def split_at_lines(text: str, rng: random.Random, max_lines: int = 3) -> tuple[str, str, str]:
    """(prefix, middle, suffix) with the middle 1..``max_lines`` whole lines of ``text``, the first not blank.

    The prefix ends with the newline before the middle (or is empty), the middle has no final
    newline and the suffix starts with it (or is empty at the end of the text).
    """
    starts: list[int] = []  # where each line starts
    blank: list[bool] = []  # and whether it is blank
    position = 0
    for line in text.split("\n"):
        if position < len(text) or not starts:
            starts.append(position)
            blank.append(not line.strip())
        position += len(line) + 1
    # The first middle line is never blank (when the text has another): at a blank line the
    # editor's cursor waits for the code to come, and a blank middle would teach "suggest nothing".
    written = [start for start, is_blank in zip(starts, blank) if not is_blank] or starts
    begin = written[rng.randrange(len(written))]
    end = text.find("\n", begin)
    if end < 0:
        end = len(text)
    for _ in range(rng.randint(1, max_lines) - 1):
        following = text.find("\n", end + 1)
        if following < 0:
            break
        end = following
    return text[:begin], text[begin:end], text[end:]


def split_rest_of_line(text: str, rng: random.Random) -> tuple[str, str, str]:
    """(prefix, middle, suffix) with the middle the rest of one line from a point inside it.

    The line is drawn among those with at least two characters after their indentation; the
    cut lies after at least one of them and before the last, so the prefix ends with typed
    characters of the line, the middle is not empty and ends at the line's end, and the suffix
    starts with the newline (or is empty at the end of the text). Texts without such a line
    fall back to ``split_at_lines``.
    """
    candidates = []  # (first character after the indentation, end of the line)
    position = 0
    for line in text.split("\n"):
        code_start = position + len(line) - len(line.lstrip())
        end = position + len(line)
        if end - code_start >= 2:
            candidates.append((code_start, end))
        position = end + 1
    if not candidates:
        return split_at_lines(text, rng, max_lines=1)
    code_start, end = candidates[rng.randrange(len(candidates))]
    cut = rng.randint(code_start + 1, end - 1)
    return text[:cut], text[cut:end], text[end:]


def format_context_chunk(relative_path: str, chunk: str) -> str:
    """One chunk of extra context as the server lays it out: ``# path``, then the chunk, newline-ended."""
    ending = "" if chunk.endswith("\n") else "\n"
    return f"# {relative_path}\n{chunk}{ending}"


def layout_fim(
    ids: SpecialIds,
    prefix: Sequence[int],
    middle: Sequence[int],
    suffix: Sequence[int],
    order: FimOrder,
    context: Sequence[int] = (),
) -> list[int]:
    """Token ids of one FIM sample in ``order`` ("psm" or "spm"; the layout raises
    ``ValueError`` for anything else), ending with end of text.

    The prompt part is the runtime's own ``FimTokens.layout`` (``context`` ids first), so
    training and serving can never disagree on where the sentinels go; the middle and end of
    text follow it.
    """
    return [*ids.fim.layout(prefix, suffix, order, context_ids=context), *middle, ids.end_of_text]


def layout_plain(ids: SpecialIds, tokens: Sequence[int], ends_document: bool) -> list[int]:
    """Token ids of one left-to-right sample; end of text only where the document really ends."""
    return [*tokens, ids.end_of_text] if ends_document else list(tokens)


def build_sample(
    tokenizer,
    ids: SpecialIds,
    text: str,
    kind: SampleKind,
    rng: random.Random,
    ends_document: bool,
    line_rate: float = 0.0,
    rest_of_line_rate: float = 0.0,
    context: Sequence[int] = (),
) -> list[int]:
    """One training sample of ``kind`` built from ``text`` (FIM split points drawn from ``rng``).

    FIM middles are line-aligned with probability ``line_rate`` (of those, a share
    ``rest_of_line_rate`` start inside the line), random otherwise; ``context`` ids (related-file
    chunks) go in front of a FIM sample. Plain samples ignore ``context``.
    """
    if kind == "plain":
        return layout_plain(ids, encode_text(tokenizer, text), ends_document)
    split = split_at_random
    if line_rate > 0 and rng.random() < line_rate:
        split = split_rest_of_line if rest_of_line_rate > 0 and rng.random() < rest_of_line_rate else split_at_lines
    prefix, middle, suffix = (encode_text(tokenizer, piece) for piece in split(text, rng))
    return layout_fim(ids, prefix, middle, suffix, kind, context)
