"""Single-line infilling: exact match and the loss of the missing line, one model or two paired.

    python benchmarks/eval_infill.py --models tiny,runs/gen2-export [--limit 500] [--json FILE]
    python benchmarks/eval_infill.py --model tiny [--json runs/eval.json] [--answers runs/answers.jsonl]

The examples (``training/infill_examples.py``): one non-blank line removed from a held-out
standard-library file, at most 50 per file (2,851 lines from 69 files with Python 3.11), and,
with ``--datasets ...,humaneval``, every line of HumanEval's canonical solutions.

``--models A,B`` (the paired form) scores every example with both models, directly on the
Hugging Face weights, in one order (``--order``, default SPM, the server's):

- exact match: greedy, at most 25 new tokens, stopped at the first newline, stripped comparison
  (``answer.strip() == middle.strip()``); no token healing;
- the loss of the missing line: the mean negative log-likelihood (nats per token) of the
  middle's tokens after the FIM prompt, from the same forward pass that starts the greedy
  decode (the prompt and the middle run as one sequence; the decode continues from the first
  token where greedy leaves the middle, on the KV cache cropped there, so it is the plain
  greedy decode at the cost of one forward plus the steps after the divergence).

The table gives each model's rates and mean loss, then B minus A: the exact-match difference
with its paired 95% interval and the McNemar counts (lines only A gets, only B gets; exact
two-sided p), and the loss difference (per-example means, paired 95% interval).

``--model M`` (one model, the earlier form) runs the project's engine (token healing as in the
server; ``--direct`` for a plain greedy loop) in PSM and SPM, exact match only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.infill_examples import (  # re-exported: the benchmark's public names
    MAX_NEW_TOKENS,
    Example,
    fit_example,
    humaneval_examples,
    make_example,
    non_blank_indices,
    stdlib_examples,
    stop_at_newline,
)

__all__ = ["MAX_NEW_TOKENS", "Example", "fit_example", "humaneval_examples", "make_example", "non_blank_indices",
           "stdlib_examples", "stop_at_newline"]


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


def resolve_model_dir(name: str) -> str:
    """A bundled model's directory for its name, else ``name`` itself (a model directory)."""
    from model_runtime.loader import BUNDLED_DIR

    bundled = BUNDLED_DIR / name
    return str(bundled if bundled.is_dir() else name)


class LineScorer:
    """Exact match and loss of the missing line on the Hugging Face model (the paired form)."""

    def __init__(self, model_dir: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from model_runtime.decode import cache_argument
        from training.samples import SpecialIds

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.ids = SpecialIds.from_tokenizer(self.tokenizer)
        self.context_tokens = self.model.config.n_positions
        self.cache_name = cache_argument(self.model)
        self.stops = {self.ids.end_of_text, self.ids.fim_prefix, self.ids.fim_middle, self.ids.fim_suffix, self.ids.fim_pad}

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True) if text else []

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _forward(self, token_ids: Sequence[int], cache, start: int):
        torch = self.torch
        positions = torch.arange(start, start + len(token_ids)).unsqueeze(0)  # [1, T]
        return self.model(input_ids=torch.tensor([list(token_ids)]), position_ids=positions, use_cache=True,
                          **{self.cache_name: cache}).logits[0]  # [T, vocab]

    def score(self, example: Example, order: str) -> tuple[str, float, int]:
        """(greedy answer up to its first newline, summed NLL of the middle's tokens, their count)."""
        from transformers import DynamicCache

        torch = self.torch
        fitted = fit_example(example, self.context_tokens, self.count_tokens)
        prompt = self.ids.fim.layout(self.tokenize(fitted.prefix), self.tokenize(fitted.suffix), order)
        middle = self.tokenize(example.middle)[: max(0, self.context_tokens - len(prompt))]
        cache = DynamicCache()
        with torch.inference_mode():
            logits = self._forward([*prompt, *middle], cache, 0)  # [P + M, vocab]
            predicted = logits[len(prompt) - 1 :]  # [M + 1, vocab]: the prediction for each middle token, then the next
            log_probs = torch.log_softmax(predicted[: len(middle)].float(), dim=-1)
            nll = -float(log_probs[torch.arange(len(middle)), torch.tensor(middle, dtype=torch.long)].sum()) if middle else 0.0
            greedy = predicted.argmax(-1).tolist()
            agree = next((k for k, token in enumerate(middle) if greedy[k] != token), len(middle))
            generated, token = list(middle[:agree])[:MAX_NEW_TOKENS], greedy[agree]
            if agree < len(middle):
                cache.crop(agree - len(middle))  # negative: drop the disagreeing tail, keep the prompt and agreeing tokens
            position = len(prompt) + agree
            while len(generated) < MAX_NEW_TOKENS and token not in self.stops:
                generated.append(token)
                if "\n" in self.tokenizer.decode(generated):
                    break
                token = int(self._forward([token], cache, position)[-1].argmax())
                position += 1
        text = self.tokenizer.decode(generated)
        return (text[: stop_at_newline(text)] if "\n" in text else text), nll, len(middle)


def score_lines(scorer, examples: Sequence[Example], order: str, label: str) -> list[dict]:
    """Per example: hit (stripped exact match), NLL sum and token count of the middle, the answer."""
    from tqdm import tqdm

    rows = []
    for example in tqdm(examples, desc=label, file=sys.stderr, dynamic_ncols=True):
        answer, nll, tokens = scorer.score(example, order)
        rows.append({"source": example.source, "hit": answer.strip() == example.middle.strip(), "nll": nll,
                     "tokens": tokens, "answer": answer})
    return rows


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value (binomial test of the discordant pairs at 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_exact_match(hits_a: Sequence[bool], hits_b: Sequence[bool]) -> dict:
    """B minus A on the same examples: rates, difference, its 95% interval (paired), McNemar counts and p."""
    n = len(hits_a)
    if n != len(hits_b) or n == 0:
        raise ValueError("paired comparison needs the same, non-empty examples for both models")
    only_a = sum(a and not b for a, b in zip(hits_a, hits_b))
    only_b = sum(b and not a for a, b in zip(hits_a, hits_b))
    difference = (only_b - only_a) / n
    half_width = 1.96 * math.sqrt(max(0.0, (only_a + only_b) / n - difference**2) / n)
    return {"a": sum(hits_a) / n, "b": sum(hits_b) / n, "difference": difference,
            "interval": [difference - half_width, difference + half_width], "only_a": only_a, "only_b": only_b,
            "both": sum(a and b for a, b in zip(hits_a, hits_b)), "mcnemar_p": mcnemar_p(only_a, only_b)}


def paired_mean(values_a: Sequence[float], values_b: Sequence[float]) -> dict:
    """B minus A of per-example values: mean difference and its 95% interval (normal approximation)."""
    differences = [b - a for a, b in zip(values_a, values_b)]
    n = len(differences)
    mean = sum(differences) / n
    spread = math.sqrt(sum((d - mean) ** 2 for d in differences) / max(1, n - 1))
    half_width = 1.96 * spread / math.sqrt(n)
    return {"difference": mean, "interval": [mean - half_width, mean + half_width]}


def summarize(rows: Sequence[dict]) -> dict:
    """Exact match and token-weighted mean loss (nats/token) of one model's rows."""
    tokens = sum(row["tokens"] for row in rows)
    return {"examples": len(rows), "exact_match": sum(row["hit"] for row in rows) / max(1, len(rows)),
            "loss_nats_per_token": sum(row["nll"] for row in rows) / max(1, tokens), "middle_tokens": tokens}


def compare(rows_a: Sequence[dict], rows_b: Sequence[dict]) -> dict:
    """The paired figures of two models' rows over the same examples."""
    if [row["source"] for row in rows_a] != [row["source"] for row in rows_b]:
        raise ValueError("the two models were scored on different examples")
    per_example = lambda rows: [row["nll"] / max(1, row["tokens"]) for row in rows]  # noqa: E731
    return {"exact_match": paired_exact_match([r["hit"] for r in rows_a], [r["hit"] for r in rows_b]),
            "loss": paired_mean(per_example(rows_a), per_example(rows_b))}


def format_paired_table(dataset: str, order: str, names: Sequence[str], summaries: Sequence[dict],
                        comparison: dict | None) -> str:
    rows = [f"{dataset}: {summaries[0]['examples']} lines, {order.upper()}, greedy <= {MAX_NEW_TOKENS} tokens",
            f"{'model':<44} {'exact match':>11} {'loss nats/token':>16}"]
    for name, summary in zip(names, summaries):
        rows.append(f"{name[-44:]:<44} {summary['exact_match']:>11.4f} {summary['loss_nats_per_token']:>16.4f}")
    if comparison:
        em, loss = comparison["exact_match"], comparison["loss"]
        rows.append(
            f"{'B - A':<44} {em['difference']:>+11.4f} {loss['difference']:>+16.4f}   (loss: per-example means)"
        )
        rows.append(
            f"{'  95% interval (paired)':<44} [{em['interval'][0]:+.4f}, {em['interval'][1]:+.4f}]"
            f"  [{loss['interval'][0]:+.4f}, {loss['interval'][1]:+.4f}]"
        )
        rows.append(
            f"  McNemar: both hit {em['both']}, only A {em['only_a']}, only B {em['only_b']}, exact p = {em['mcnemar_p']:.3g}"
        )
    return "\n".join(rows)


def run_paired(args) -> int:
    names = args.models.split(",")
    if not 1 <= len(names) <= 2:
        raise SystemExit("--models takes one or two models: A,B (B is compared with A)")
    builders = {"stdlib": lambda: stdlib_examples(args.stdlib_lines, args.seed),
                "humaneval": lambda: humaneval_examples(args.seed)}
    scorers = [LineScorer(resolve_model_dir(name)) for name in names]
    payload = {"command": "python benchmarks/eval_infill.py " + " ".join(args.argv), "models": names,
               "order": args.order, "datasets": {}}
    tables = []
    for dataset in args.datasets.split(","):
        examples = builders[dataset]()[: args.limit]
        started = time.perf_counter()
        rows = [score_lines(scorer, examples, args.order, f"{dataset} {name}") for name, scorer in zip(names, scorers)]
        summaries = [summarize(model_rows) for model_rows in rows]
        comparison = compare(*rows) if len(rows) == 2 else None
        payload["datasets"][dataset] = {"summaries": dict(zip(names, summaries)), "comparison": comparison,
                                        "files": len({e.source.rsplit(":", 1)[0] for e in examples}),
                                        "seconds": round(time.perf_counter() - started, 1)}
        tables.append(format_paired_table(dataset, args.order, names, summaries, comparison))
        if args.answers:
            with args.answers.open("a", encoding="utf-8") as stream:
                for index, example in enumerate(examples):
                    answers = {name: rows[k][index]["answer"] for k, name in enumerate(names)}
                    stream.write(json.dumps({"dataset": dataset, "source": example.source, "expected": example.middle,
                                             "answers": answers}) + "\n")
    print("\n\n".join(tables))
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def format_table(results: dict[str, dict]) -> str:
    rows = [f"{'dataset':<10} {'examples':>8} {'PSM':>7} {'SPM':>7} {'empty':>7}"]
    for name, figures in results.items():
        rows.append(
            f"{name:<10} {figures['examples']:>8} {figures['psm']:>7.3f} {figures['spm']:>7.3f} {figures['empty']:>7.3f}"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="the paired form: A[,B], bundled names or model directories")
    parser.add_argument("--order", choices=("spm", "psm"), default="spm", help="paired form: the FIM order (default spm)")
    parser.add_argument("--model", default="tiny", help="the one-model engine form: bundled name or model directory")
    parser.add_argument("--datasets", help="comma-separated: stdlib, humaneval (default: stdlib paired, both otherwise)")
    parser.add_argument("--stdlib-lines", type=int, help="draw this many from the capped pool (default: all of it)")
    parser.add_argument("--limit", type=int, help="at most N examples per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-token-healing", action="store_true", help="engine only: prompt exactly as split")
    parser.add_argument("--direct", action="store_true", help="a plain greedy loop instead of the engine")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--answers", type=Path, help="write every example's expected line and answers (JSON lines)")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])

    import torch

    torch.set_num_threads(args.threads)
    if args.models:
        args.datasets = args.datasets or "stdlib"
        return run_paired(args)
    args.datasets = args.datasets or "stdlib,humaneval"
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
