"""Replay typing through a real source file and time a completion at every pause.

Prints, side by side from one run on the same prompts:
  (a) our engine with KV reuse, (b) our engine with reuse off, (c) ``model.generate()`` on the
  full prompt. All three decode greedily, stop at the first newline (single-line mode) or after
  ``--max-new-tokens``, and see exactly the same prompt token ids.

  python benchmarks/typing_replay.py                       # bundled tiny model
  python benchmarks/typing_replay.py --random-shape 256x6  # a random model, n_embd x layers
"""

from __future__ import annotations

import argparse
import statistics
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model_runtime import CompletionRequest, LoadOptions, load_engine  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])
PREFIX_WINDOW_CHARS = 3000
SUFFIX_WINDOW_CHARS = 800
WINDOW_STEP_CHARS = 1024  # window edges move in coarse jumps so typing keeps prompts append-only


@dataclass
class Pause:
    prefix: str
    suffix: str


def typing_pauses(text: str, first_line: int, lines: int) -> list[Pause]:
    """Remove ``lines`` lines at ``first_line`` and type them back; pause after each word."""
    all_lines = text.splitlines(keepends=True)
    before = "".join(all_lines[:first_line])
    typed = "".join(all_lines[first_line : first_line + lines])
    after = "".join(all_lines[first_line + lines :])
    pauses = []
    for index, char in enumerate(typed):
        if char in " (.\n" and typed[index - 1 : index] not in (" ", "\n"):
            pauses.append(Pause(before + typed[: index + 1], after))
    return pauses


def window(pause: Pause) -> tuple[str, str]:
    """Character windows whose start/end snap to a coarse grid, then to line boundaries."""
    start = max(0, len(pause.prefix) - PREFIX_WINDOW_CHARS)
    start = (start // WINDOW_STEP_CHARS) * WINDOW_STEP_CHARS
    if start:
        start = pause.prefix.find("\n", start) + 1
    prefix = pause.prefix[start:]
    suffix = pause.suffix[:SUFFIX_WINDOW_CHARS]
    cut = suffix.rfind("\n")
    return prefix, suffix[: cut + 1] if cut > 0 else suffix


def stop_at_newline(text: str) -> int | None:
    index = text.find("\n")
    return index if index >= 0 else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def build_random_model(shape: str) -> str:
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    from tests.model_factory import build_tokenizer

    n_embd, n_layer = (int(x) for x in shape.split("x"))
    tokenizer = build_tokenizer(vocab_size=4096)
    config = GPTBigCodeConfig(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=n_embd, n_layer=n_layer,
        n_head=max(1, n_embd // 64), multi_query=True, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(0)
    target = Path(tempfile.mkdtemp(prefix="random-gptbigcode-"))
    GPTBigCodeForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


def run_engine(engine, prompts, max_new_tokens: int, order: str) -> tuple[list[float], list[int], list[str]]:
    latencies, prefilled, texts = [], [], []
    for prefix, suffix in prompts:
        request = CompletionRequest(prefix=prefix, suffix=suffix, max_new_tokens=max_new_tokens,
                                    fim_order=order, cache_key="file", token_healing=False)
        t0 = time.perf_counter()
        result = engine.complete(request, stop=stop_at_newline)
        latencies.append((time.perf_counter() - t0) * 1000)
        prefilled.append(result.stats.prefilled_tokens)
        texts.append(result.text)
    return latencies, prefilled, texts


def run_generate(engine, prompts, max_new_tokens: int, order: str) -> tuple[list[float], list[int], list[str]]:
    model, tokenizer = engine.model, engine.tokenizer
    eos = sorted(engine.table.stop_ids)
    latencies, prefilled, texts = [], [], []
    for prefix, suffix in prompts:
        ids = engine.prompts.build(CompletionRequest(prefix=prefix, suffix=suffix, max_new_tokens=max_new_tokens, token_healing=False), order).token_ids
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids], device=model.device), attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
                max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos[0],
                stop_strings=["\n"], tokenizer=tokenizer,
            )
            new = out[0, len(ids):].tolist()
        text = engine.table.text_of([t for t in new if t not in engine.table.stop_ids])
        latencies.append((time.perf_counter() - t0) * 1000)
        prefilled.append(len(ids))
        texts.append(text.split("\n", 1)[0])
    return latencies, prefilled, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--random-shape", help="use a random model of this shape instead, e.g. 256x6")
    parser.add_argument("--file", default=str(STDLIB / "textwrap.py"))
    parser.add_argument("--first-line", type=int, default=120)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--fim-order", default="spm", choices=["psm", "spm"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_random_model(args.random_shape) if args.random_shape else args.model
    text = Path(args.file).read_text(encoding="utf-8")
    prompts = [window(p) for p in typing_pauses(text, args.first_line, args.lines)]
    reuse = load_engine(LoadOptions(model=model, device=args.device))
    no_reuse = load_engine(LoadOptions(model=model, device=args.device, kv_cache_bytes=0))
    print(f"model {model} ({reuse.info.parameters / 1e6:.1f}M parameters, context {reuse.info.context_tokens}), "
          f"{len(prompts)} requests typing {args.lines} lines of {Path(args.file).name}, order {args.fim_order}, "
          f"{torch.get_num_threads()} threads")
    rows = {
        "(a) engine, KV reuse": run_engine(reuse, prompts, args.max_new_tokens, args.fim_order),
        "(b) engine, reuse off": run_engine(no_reuse, prompts, args.max_new_tokens, args.fim_order),
        "(c) model.generate()": run_generate(reuse, prompts, args.max_new_tokens, args.fim_order),
    }
    print(f"{'':24} {'prefilled/req':>14} {'p50 ms':>9} {'p95 ms':>9}")
    for name, (latencies, prefilled, _) in rows.items():
        print(f"{name:24} {statistics.mean(prefilled):14.1f} {percentile(latencies, 0.5):9.1f} {percentile(latencies, 0.95):9.1f}")
    a, b, c = rows.values()
    print(f"prefilled tokens (a)/(b): {statistics.mean(a[1]) / statistics.mean(b[1]):.3f}   "
          f"p50 latency (a)/(c): {percentile(a[0], 0.5) / percentile(c[0], 0.5):.3f}   "
          f"p95 latency (a)/(c): {percentile(a[0], 0.95) / percentile(c[0], 0.95):.3f}")
    same_ab = sum(x == y for x, y in zip(a[2], b[2]))
    same_ac = sum(x == y for x, y in zip(a[2], c[2]))
    print(f"identical completions: (a)=(b) {same_ab}/{len(prompts)}, (a)=(c) {same_ac}/{len(prompts)}")


if __name__ == "__main__":
    main()
