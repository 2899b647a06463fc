"""Per-keystroke latency of our in-process engine against llama.cpp's server, on the same model.

    python benchmarks/peer_latency.py                    # bundled tiny model, llama.cpp from .venv
    python benchmarks/peer_latency.py --url http://127.0.0.1:8012   # any OpenAI-compatible server
    python benchmarks/peer_latency.py --llama-python /path/to/venv/bin/python --files 6

Typing: in each of the first ``--files`` held-out stdlib files (``training/heldout_files.txt``),
one line is deleted and typed back a character at a time; every keystroke asks both engines for
a single-line completion of the same FIM prompt (SPM, the engine's default order), greedy, at
most ``--max-new-tokens``, stopping at the line break. Requests alternate per keystroke (who goes
first flips each time), so both see the same machine load.

- ours: ``Engine.complete`` in this process, KV reuse on (one cache key per file), stop callback
  at the first newline, no token healing (the peer has none). Each ``--variant`` is one engine
  (``default``: as loaded by default; ``plain``: the plain decode loop; ``fast``: the
  fixed-shape greedy step with prompt-lookup drafts; ``fast-nodraft``: the step without drafts).
- the peer: ``POST /v1/completions`` with the FIM prompt as one string (special tokens spelled in
  it: llama.cpp tokenizes them as specials), ``stop: ["\\n"]``, temperature 0, no repeat
  penalty, over one kept-alive HTTP connection. Without ``--url`` the script exports the model to
  GGUF (``training/gguf_export.py``) and starts ``python -m llama_cpp.server`` from the
  ``llama-cpp-python[server]`` venv (``--llama-python``; default ``.venv/bin/python`` of the
  repository), one thread like ours for a small model, and stops it at the end.

Prints p50/p95 ms per keystroke for each, the ratios ours/peer, how often the texts agree with
the peer's and with the first variant's, and how often the prompt token counts differ (a
tokenizer mismatch would show there).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model_runtime import CompletionRequest, LoadOptions, load_engine  # noqa: E402

PREFIX_WINDOW_CHARS = 900  # fits the tiny model's 512 positions with the suffix and 32 new tokens
WINDOW_STEP_CHARS = 256
SUFFIX_WINDOW_CHARS = 300


@dataclass(frozen=True)
class Keystroke:
    key: str  # the document: one KV slot per file
    prefix: str
    suffix: str


def typing_sequence(files: int, min_chars: int = 24, max_chars: int = 72) -> list[Keystroke]:
    """Keystrokes retyping one line (the first of fitting length past 40% of the file) per file."""
    from training.corpus import load_heldout_documents

    strokes = []
    documents = [d for d in load_heldout_documents() if d.text.count("\n") > 40]
    for document in documents[:files]:
        lines = document.text.split("\n")
        index = next(
            (i for i in range(int(len(lines) * 0.4), len(lines)) if min_chars <= len(lines[i].strip()) <= max_chars and not lines[i].strip().startswith("#")),
            None,
        )
        if index is None:
            continue
        before, line, after = "\n".join(lines[:index]) + "\n", lines[index], "\n" + "\n".join(lines[index + 1 :])
        for typed in range(len(line) - len(line.lstrip()) + 1, len(line) + 1):
            prefix, suffix = window(before + line[:typed], after)
            strokes.append(Keystroke(document.path, prefix, suffix))
    return strokes


def window(prefix: str, suffix: str) -> tuple[str, str]:
    """Character windows whose start snaps to a coarse grid and a line start (append-only typing)."""
    start = max(0, len(prefix) - PREFIX_WINDOW_CHARS)
    start = (start // WINDOW_STEP_CHARS) * WINDOW_STEP_CHARS
    if start:
        start = prefix.find("\n", start) + 1
    suffix = suffix[:SUFFIX_WINDOW_CHARS]
    cut = suffix.rfind("\n")
    return prefix[start:], suffix[: cut + 1] if cut > 0 else suffix


def stop_at_newline(text: str) -> int | None:
    index = text.find("\n")
    return index if index >= 0 else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Peer:
    """A kept-alive connection to an OpenAI-compatible ``/v1/completions``."""

    def __init__(self, url: str, model_name: str):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.model_name = model_name
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def complete(self, prompt: str, max_tokens: int) -> tuple[str, int]:
        body = {
            "model": self.model_name, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
            "top_p": 1.0, "top_k": 0, "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "stop": ["\n"], "stream": False,
        }  # fmt: skip
        for attempt in (0, 1):
            try:
                self.connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
                response = self.connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        if response.status != 200:
            raise RuntimeError(f"the peer answered HTTP {response.status}: {payload[:200]!r}")
        answer = json.loads(payload)
        return answer["choices"][0]["text"], int(answer.get("usage", {}).get("prompt_tokens", -1))


def start_llama_server(python: str, gguf_path: Path, port: int, threads: int, context: int, log_path: Path) -> subprocess.Popen:
    command = [
        python, "-m", "llama_cpp.server", "--model", str(gguf_path), "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(context), "--n_threads", str(threads), "--n_threads_batch", str(threads), "--verbose", "False",
    ]  # fmt: skip
    log = open(log_path, "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama.cpp's server exited with {process.returncode}: see {log_path}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/v1/models")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"llama.cpp's server was not ready after 180 s: see {log_path}")


def fim_string(engine, prefix: str, suffix: str) -> str:
    """The SPM prompt as text: our layout with the sentinels spelled out (no token healing)."""
    start, middle, end = engine.fim.names[0], engine.fim.names[1], engine.fim.names[2]
    return f"{start}{end}{suffix}{middle}{prefix}"


VARIANTS = {
    "default": {},  # as loaded by default
    "plain": {"fast_decode": False},  # the plain decode loop
    "fast": {"fast_decode": True},  # the fixed-shape greedy step with prompt-lookup drafts
    "fast-nodraft": {"fast_decode": True, "draft_tokens": 0},  # the step, one token per forward
}
VARIANTS["baseline"] = VARIANTS["plain"]


def variant_options(name: str, model: str) -> LoadOptions:
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}: use one of {', '.join(VARIANTS)}")
    return LoadOptions(model=model, **VARIANTS[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="our model (bundled name or directory)")
    parser.add_argument("--gguf", type=Path, help="the peer's GGUF file (default: export --model)")
    parser.add_argument("--url", help="an OpenAI-compatible server already running (skips starting llama.cpp)")
    parser.add_argument("--llama-python", default=str(REPO / ".venv" / "bin" / "python"), help="python of the llama-cpp-python[server] venv")
    parser.add_argument("--port", type=int, default=8012)
    parser.add_argument("--peer-threads", type=int, default=1)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--variant", action="append", help=f"our engine variants to time ({', '.join(VARIANTS)}); repeatable")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    variants = args.variant or ["default"]

    engines = {name: load_engine(variant_options(name, args.model)) for name in variants}
    first = next(iter(engines.values()))
    strokes = typing_sequence(args.files)
    server = None
    try:
        if args.url:
            url = args.url
        else:
            gguf_path = args.gguf
            if gguf_path is None:
                from model_runtime.loader import resolve_source
                from training.gguf_export import export_gguf

                gguf_path = Path(tempfile.mkdtemp(prefix="peer-gguf-")) / "model.gguf"
                export_gguf(Path(resolve_source(args.model).location), gguf_path, "f32")
            log_path = Path(tempfile.gettempdir()) / f"llama-server-{args.port}.log"
            server = start_llama_server(args.llama_python, gguf_path, args.port, args.peer_threads, first.info.context_tokens, log_path)
            url = f"http://127.0.0.1:{args.port}"
        peer = Peer(url, args.model)
        run(args, engines, peer, strokes)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def run(args, engines: dict, peer: Peer, strokes: list[Keystroke]) -> None:
    first = next(iter(engines.values()))
    for stroke in strokes[: args.warmup]:  # lazy initialisation on both sides, outside the timing
        peer.complete(fim_string(first, stroke.prefix, stroke.suffix), args.max_new_tokens)
        for engine in engines.values():
            engine.complete(CompletionRequest(prefix=stroke.prefix, suffix=stroke.suffix, max_new_tokens=args.max_new_tokens, token_healing=False))
    names = list(engines) + ["peer"]
    latencies = {name: [] for name in names}
    texts = {name: [] for name in names}
    tokens = {name: [] for name in engines}
    prompt_mismatch = truncated = 0
    for index, stroke in enumerate(strokes):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            if name == "peer":
                text, prompt_tokens = peer.complete(fim_string(first, stroke.prefix, stroke.suffix), args.max_new_tokens)
            else:
                request = CompletionRequest(prefix=stroke.prefix, suffix=stroke.suffix, max_new_tokens=args.max_new_tokens,
                                            cache_key=stroke.key, token_healing=False)  # fmt: skip
                result = engines[name].complete(request, stop=stop_at_newline)
                text = result.text
                tokens[name].append(result.stats.generated_tokens)
                ours_prompt_tokens = result.stats.prompt_tokens
                truncated += result.stats.truncated_tokens > 0
            latencies[name].append((time.perf_counter() - start) * 1000)
            texts[name].append(text)
        prompt_mismatch += prompt_tokens != ours_prompt_tokens
    cpu = platform.processor() or platform.machine()
    print(f"model {args.model}: {len(strokes)} keystrokes over {args.files} held-out files, max {args.max_new_tokens} new tokens, "
          f"{os.cpu_count()} CPUs ({cpu}), torch threads {__import__('torch').get_num_threads()}, peer {peer.host}:{peer.port}")  # fmt: skip
    print(f"{'engine':12} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'p50/peer':>9} {'p95/peer':>9} {'same as peer':>12} {'as ' + names[0]:>12} {'tokens/req':>11}")
    peer_p50, peer_p95 = percentile(latencies["peer"], 0.5), percentile(latencies["peer"], 0.95)
    for name in names:
        p50, p95 = percentile(latencies[name], 0.5), percentile(latencies[name], 0.95)
        same = sum(a == b for a, b in zip(texts[name], texts["peer"]))
        same_first = sum(a == b for a, b in zip(texts[name], texts[names[0]]))
        mean_tokens = f"{statistics.mean(tokens[name]):11.1f}" if name in tokens else f"{'':11}"
        print(f"{name:12} {p50:8.1f} {p95:8.1f} {statistics.mean(latencies[name]):8.1f} {p50 / peer_p50:9.2f} {p95 / peer_p95:9.2f} "
              f"{same:7d}/{len(strokes):<4d} {same_first:7d}/{len(strokes):<4d} {mean_tokens}")  # fmt: skip
    print(f"prompt token counts differing from the peer's: {prompt_mismatch}/{len(strokes)}; our prompts truncated: {truncated}")


if __name__ == "__main__":
    main()
