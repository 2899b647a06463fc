"""Cross-file completion: does context from the other files of a package help, and does its KV
stay reused while typing?

    python benchmarks/crossfile_eval.py [--model tiny] [--limit 300] [--budgets 0,64,128] [--replay-lines 12]

Examples. The held-out files of ``training/heldout_files.txt`` hold too few whole packages
(the split is per file: nearly every held-out file's siblings are training files), so each
held-out file is the *current* document and its sibling ``.py`` files in the same folder of the
standard library (at most ``--max-siblings``, each at most 200 KB) are the *other open
documents*. A line qualifies when it uses (as a whole word) a name that a sibling defines at
top level or as a class member (``ast``), that the current file defines nowhere, and that is
not a Python builtin. One qualifying line is drawn per (file, name), then ``--limit`` of them
(seeded).

Per example, the line is removed (cursor at its start, the suffix starts with its line
break), and the server's own planning (``Completer._plan``: windows, the context store's
choice, the budget taken from the windows) builds the request with ``extraContextTokens`` set to
each of ``--budgets`` (0 = off). The engine decodes greedily, at most 25 new tokens, up to the
first line break. Scores: exact match (``answer.strip() == line.strip()``), characters saved
(the common prefix of answer and line, after the indentation, summed over examples, as a share
of the lines' characters), and how often the block holds the definition of the used name.

Typing replay (``--replay-lines`` examples): the line is typed back one character at a time in
the same document (the same KV slot), with a completion at every keystroke; the reused and
prefilled prompt tokens of each keystroke (``CompletionStats``) are averaged, context off and
on. Both sides see the same documents; the only difference is the setting.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import json
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsp_server.completer import Completer
from lsp_server.context_store import ContextStore
from lsp_server.engine_host import EngineHost
from lsp_server.settings import Settings
from lsp_server.stats import ServerStats
from model_runtime.api import CompletionRequest

MAX_NEW_TOKENS = 25
MAX_SIBLING_BYTES = 200_000
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Example:
    path: str  # relative to the stdlib
    line_index: int
    name: str  # the sibling-defined name the line uses
    defined_in: str  # the sibling that defines it
    prefix: str  # document text before the removed line (ends with "\n")
    middle: str  # the removed line
    suffix: str  # starts with the line break that ended it
    siblings: tuple[tuple[str, str], ...]  # (relative path, text) of the other open documents


def defined_names(tree: ast.AST) -> set[str]:
    """Every name a file binds anywhere: defs, classes, arguments, assignments, imports, attributes set."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def exported_names(tree: ast.Module) -> set[str]:
    """Top-level defs, classes and assignments, and class members: what another file may use."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names.update(item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return {name for name in names if len(name) >= 4 and not (name.startswith("__") and name.endswith("__"))}


def parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def build_examples(limit: int, max_siblings: int, seed: int) -> tuple[list[Example], dict[str, int]]:
    from training.corpus import STDLIB_DIR, read_heldout_list

    rng = random.Random(seed)
    candidates: list[Example] = []
    counts = {"heldout_files": 0, "with_siblings": 0}
    for relative in read_heldout_list():
        counts["heldout_files"] += 1
        path = STDLIB_DIR / relative
        text = path.read_text(encoding="utf-8", errors="replace")
        tree = parse(text)
        if tree is None:
            continue
        siblings = sorted(p for p in path.parent.glob("*.py") if p != path and p.stat().st_size <= MAX_SIBLING_BYTES)
        rng.shuffle(siblings)
        sibling_texts = []
        for sibling in siblings[:max_siblings]:
            sibling_text = sibling.read_text(encoding="utf-8", errors="replace")
            sibling_tree = parse(sibling_text)
            if sibling_tree is not None:
                sibling_texts.append((sibling.relative_to(STDLIB_DIR).as_posix(), sibling_text, exported_names(sibling_tree)))
        if not sibling_texts:
            continue
        counts["with_siblings"] += 1
        local = defined_names(tree) | _BUILTINS
        lines = text.split("\n")
        seen: set[str] = set()
        for index, line in enumerate(lines):
            stripped = line.strip()
            if len(stripped) < 8 or stripped.startswith(("#", "import ", "from ")):
                continue
            for word in _WORD.findall(line):
                if word in local or word in seen:
                    continue
                owner = next((p for p, _, names in sibling_texts if word in names), None)
                if owner is None:
                    continue
                seen.add(word)
                prefix = "".join(part + "\n" for part in lines[:index])
                suffix = "".join("\n" + part for part in lines[index + 1 :])
                others = tuple((p, t) for p, t, _ in sibling_texts)
                candidates.append(Example(relative, index, word, owner, prefix, line, suffix, others))
                break
    rng.shuffle(candidates)
    return candidates[:limit], counts


class Harness:
    """The server's planning over a real engine: a Completer whose store holds the siblings."""

    def __init__(self, engine):
        host = EngineHost()
        host.engine = engine
        self.engine = engine
        self.completer = Completer(host, ServerStats())

    def open_package(self, example: Example, document: str) -> str:
        """A fresh store holding the example's siblings and its document (all "open")."""
        self.completer.context = ContextStore(roots=("/stdlib",))
        texts = {f"file:///stdlib/{path}": text for path, text in example.siblings}
        uri = f"file:///stdlib/{example.path}"
        texts[uri] = document
        self.completer.context.read_open = texts.get
        for other, text in texts.items():
            if other != uri:
                self.completer.context.opened(other, "python", text)
        self.completer.context.opened(uri, "python", document)
        return uri

    def request(self, uri: str, text: str, offset: int, settings: Settings) -> tuple[CompletionRequest, str]:
        plan = self.completer._plan(self.engine, text, offset, "\n", settings, model_key=None, language_id="python", uri=uri)
        request = CompletionRequest(
            prefix=plan.windows.prefix, suffix=plan.windows.suffix, extra_context=plan.extra_context,
            max_new_tokens=MAX_NEW_TOKENS, fim_order=settings.fim_order, cache_key=uri,  # type: ignore[arg-type]
        )  # fmt: skip
        return request, plan.extra_context


def stop_at_newline(text: str) -> int | None:
    index = text.find("\n")
    return index if index >= 0 else None


def common_prefix(a: str, b: str) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def defines(block: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*=", block, re.MULTILINE) is not None


def score(harness: Harness, examples: Sequence[Example], budget: int, settings: Settings) -> dict:
    settings = replace(settings, extra_context_tokens=budget)
    exact = saved = total_chars = defined = with_block = 0
    block_tokens: list[int] = []
    started = time.perf_counter()
    for example in examples:
        document = example.prefix + example.suffix
        uri = harness.open_package(example, document)
        request, block = harness.request(uri, document, len(example.prefix), settings)
        answer = harness.engine.complete(replace(request, cache_key=None), stop=stop_at_newline).text
        expected = example.middle.strip()
        exact += answer.strip() == expected
        saved += common_prefix(answer.lstrip(), example.middle.lstrip())
        total_chars += len(example.middle.lstrip())
        with_block += bool(block)
        defined += defines(block, example.name)
        if block:
            block_tokens.append(harness.engine.count_tokens(block))
    n = max(1, len(examples))
    if budget > 0 and examples and not with_block:  # the planning lost the store: say so rather than report "no gain"
        print(f"warning: extraContextTokens {budget} gave no example any extra context", file=sys.stderr)
    return {
        "budget_tokens": budget, "examples": len(examples), "exact_match": exact / n, "chars_saved": saved / max(1, total_chars),
        "with_block": with_block / n, "block_defines_name": defined / n,
        "mean_block_tokens": statistics.mean(block_tokens) if block_tokens else 0.0, "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def replay(harness: Harness, examples: Sequence[Example], budget: int, settings: Settings) -> dict:
    """Type each example's line back a character at a time; one completion per keystroke."""
    settings = replace(settings, extra_context_tokens=budget)
    reused: list[int] = []
    prefilled: list[int] = []
    prompt: list[int] = []
    block_changes = keystrokes = 0
    for example in examples:
        harness.engine.kv_store.clear()
        uri = harness.open_package(example, example.prefix + example.suffix)
        previous_block = None
        for typed in range(len(example.middle) + 1):
            document = example.prefix + example.middle[:typed] + example.suffix
            harness.completer.context.changed(uri, example.line_index)
            request, block = harness.request(uri, document, len(example.prefix) + typed, settings)
            stats = harness.engine.complete(request, stop=stop_at_newline).stats
            if typed == 0:  # the first request of a document prefills everything: not a keystroke
                previous_block = block
                continue
            keystrokes += 1
            block_changes += block != previous_block
            previous_block = block
            reused.append(stats.reused_tokens)
            prefilled.append(stats.prefilled_tokens)
            prompt.append(stats.prompt_tokens)
    return {
        "budget_tokens": budget, "keystrokes": keystrokes, "mean_prompt_tokens": statistics.mean(prompt),
        "mean_reused_tokens": statistics.mean(reused), "mean_prefilled_tokens": statistics.mean(prefilled),
        "p90_prefilled_tokens": sorted(prefilled)[int(0.9 * (len(prefilled) - 1))], "block_changes": block_changes,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--budgets", default="0,64,128", help="extraContextTokens values; 0 = off")
    parser.add_argument("--max-siblings", type=int, default=12)
    parser.add_argument("--replay-lines", type=int, default=12)
    parser.add_argument("--fim-order", default="spm", choices=("spm", "psm"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from model_runtime import LoadOptions, load_engine

    engine = load_engine(LoadOptions(model=args.model, device="cpu"))
    harness = Harness(engine)
    examples, counts = build_examples(args.limit, args.max_siblings, args.seed)
    settings = Settings(fim_order=args.fim_order)
    budgets = [int(b) for b in args.budgets.split(",")]
    print(f"model {args.model} ({engine.info.context_tokens}-token context), {args.fim_order}; {counts['heldout_files']} held-out files, "
          f"{counts['with_siblings']} with sibling files; {len(examples)} examples", file=sys.stderr)  # fmt: skip
    results = {"quality": [score(harness, examples, budget, settings) for budget in budgets]}
    replayed = [e for e in examples if len(e.middle.strip()) >= 12][: args.replay_lines]
    results["replay"] = [replay(harness, replayed, budget, settings) for budget in (budgets[0], budgets[-1])]
    rows = [f"{'budget':>6} {'examples':>8} {'exact':>7} {'saved':>7} {'block':>7} {'defines':>7} {'blockTok':>8}"]
    for r in results["quality"]:
        rows.append(f"{r['budget_tokens']:>6} {r['examples']:>8} {r['exact_match']:>7.3f} {r['chars_saved']:>7.3f} {r['with_block']:>7.3f} "
                    f"{r['block_defines_name']:>7.3f} {r['mean_block_tokens']:>8.1f}")  # fmt: skip
    rows.append(f"\n{'budget':>6} {'keys':>6} {'prompt':>7} {'reused':>7} {'prefill':>7} {'p90pre':>7} {'blockChg':>8}")
    for r in results["replay"]:
        rows.append(f"{r['budget_tokens']:>6} {r['keystrokes']:>6} {r['mean_prompt_tokens']:>7.1f} {r['mean_reused_tokens']:>7.1f} "
                    f"{r['mean_prefilled_tokens']:>7.1f} {r['p90_prefilled_tokens']:>7} {r['block_changes']:>8}")  # fmt: skip
    sys.stdout.write("\n".join(rows) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"counts": counts, **results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
