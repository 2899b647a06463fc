"""What token healing costs and changes through a remote engine (vLLM), beside in-process.

    python benchmarks/remote_healing.py --server-url http://127.0.0.1:8000 [--cursors 40]

Cursors inside lines of held-out stdlib files (mid-word and at indentation). For each cursor,
alternating, the remote engine with token healing on and off: completion latency p50/p95, how
many HTTP requests a completion took (healing asks for each constrained token alone), how many
prompts were healed, and how often the remote text equals the in-process engine's (greedy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model_runtime.api import CompletionRequest, LoadOptions  # noqa: E402


def cursors(count: int) -> list[tuple[str, str]]:
    from training.corpus import load_heldout_documents

    texts = [d.text for d in sorted(load_heldout_documents(), key=lambda d: d.path) if 8_000 < len(d.text) < 100_000]
    out = []
    for text in texts:
        lines = text.splitlines(keepends=True)
        offset = 0
        for number, line in enumerate(lines):
            if number > 30 and number % 17 == 0 and len(line.strip()) > 12:
                cut = offset + len(line) - len(line.lstrip()) + (len(line.strip()) // 2 if number % 2 else 0)  # mid-line, or the indentation
                out.append((text[max(0, cut - 1200) : cut], text[cut : cut + 400]))
            offset += len(line)
            if len(out) >= count:
                return out
    return out


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(fraction * len(ordered) + 0.5)) - 1)] if ordered else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--cursors", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args(argv)
    from model_runtime import load_engine
    from model_runtime.openai_engine import load_openai_engine

    remote = load_openai_engine(LoadOptions(model=args.model, backend="openai", server_url=args.server_url, request_timeout_ms=60_000))
    local = load_engine(LoadOptions(model=args.model, device="cpu"))
    figures = {True: {"ms": [], "requests": 0, "healed": 0, "same": 0}, False: {"ms": [], "requests": 0, "healed": 0, "same": 0}}
    spots = cursors(args.cursors)
    for prefix, suffix in spots:
        for healing in (True, False):
            request = CompletionRequest(prefix=prefix, suffix=suffix, max_new_tokens=args.max_new_tokens, token_healing=healing)
            before = remote.counters["requests"]
            calls_before = remote.http_requests
            started = time.perf_counter()
            result = remote.complete(request)
            figures[healing]["ms"].append((time.perf_counter() - started) * 1000)
            figures[healing]["requests"] += remote.http_requests - calls_before
            figures[healing]["healed"] += result.stats.healed_chars > 0
            figures[healing]["same"] += local.complete(request).text == result.text
            assert remote.counters["requests"] == before + 1
    print(f"{len(spots)} cursors, {args.model}, server {args.server_url}")
    print("| token healing | p50 ms | p95 ms | mean ms | HTTP requests per completion | prompts healed | remote text = in-process |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for healing in (True, False):
        f = figures[healing]
        print(
            f"| {'on' if healing else 'off'} | {percentile(f['ms'], 0.5):.1f} | {percentile(f['ms'], 0.95):.1f} | {statistics.fmean(f['ms']):.1f} | "
            f"{f['requests'] / len(spots):.2f} | {f['healed']} | {f['same']}/{len(spots)} |"
        )
    remote.close()
    local.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
