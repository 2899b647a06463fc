"""Decode speed of a randomly initialised model of SantaCoder's exact shape.

Random weights cost the same time as trained ones; generation is forced to a fixed length
(``ignore_eos``). For each precision and decode path it prints one table row, from one run:
prefill ms for 256/1024/1792 tokens, decode ms/token, end-to-end ms of a 32-token completion
after a one-token edit with a warm KV cache, and the bandwidth floor (weight bytes / measured
copy bandwidth) with the fraction of it reached.

Paths: ``transformers`` (its own forward), ``static`` (the lean static-KV forward, the plain
decode loop), ``fast`` (``LoadOptions.fast_decode``: the fixed-shape greedy step; its decode
ms/token is the step one token per forward, its completion uses prompt-lookup drafts).

Before any timing, the greedy tokens of the static loop and of the fast step (with and without
drafts) are compared in **fp32** after a prefill, a crop and a delta prefill, on a copy of the
shape with peaked random weights (bf16 near-ties of random weights would hide a wrong mask or
flip on rounding): a mismatch prints both sequences and exits with status 1. Per precision, the fast path's completion text is compared with the
static path's too (a mismatch there is reported in the table; it fails only in fp32).

  python benchmarks/decode_speed.py                       # SantaCoder shape, CUDA if present
  python benchmarks/decode_speed.py --shape 256x4 --precisions fp32   # a CPU smoke run
  python benchmarks/decode_speed.py --precisions bf16 --paths static,fast   # the GPU table, quick
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model_runtime import CompletionRequest, LoadOptions, load_engine  # noqa: E402

SANTACODER = dict(n_embd=2048, n_layer=24, n_head=16, n_positions=2048, vocab_size=49280)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build_model(shape: str, peaked: bool = False) -> str:
    """Save a random multi-query GPTBigCode (weights in bf16 for the full shape) and a tokenizer.

    ``peaked``: a large ``initializer_range`` and fp32 weights, so greedy choices are far from
    ties (for comparing decode paths token by token, as the unit tests do)."""
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    from tests.model_factory import build_tokenizer

    if shape == "santacoder":
        sizes = SANTACODER
    else:
        n_embd, n_layer = (int(x) for x in shape.split("x"))
        sizes = dict(n_embd=n_embd, n_layer=n_layer, n_head=max(1, n_embd // 128), n_positions=2048, vocab_size=4096)
    tokenizer = build_tokenizer(vocab_size=4096)  # the model's extra vocabulary rows act as padding
    extra = dict(initializer_range=0.2) if peaked else {}
    config = GPTBigCodeConfig(multi_query=True, bos_token_id=0, eos_token_id=0, **sizes, **extra)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = GPTBigCodeForCausalLM(config).to(torch.bfloat16 if shape == "santacoder" and not peaked else torch.float32)
    target = Path(tempfile.mkdtemp(prefix="decode-speed-"))
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    del model
    return str(target)


def copy_bandwidth_bytes_per_s(device: str) -> float:
    """Device-to-device copy bandwidth (read + write bytes per second)."""
    source = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize(device)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * source.numel() / min(times)


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def time_ms(device: str, fn) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1000


def measure(engine, device: str, repeats: int) -> dict[str, float]:
    figures = {}
    tokens = list(range(10, 10 + 1792))
    for length in (256, 1024, 1792):
        runs = [time_ms(device, lambda length=length: engine.prefill(engine_new_cache(engine), tokens[:length], 0)) for _ in range(repeats)]
        figures[f"prefill {length}"] = statistics.median(runs)
    cache = engine_new_cache(engine)
    engine.prefill(cache, tokens[:1024], 0)
    steps = 64
    runs = [time_ms(device, lambda: [engine.prefill(cache, [7], 1024 + i) for i in range(steps)]) / steps]
    for _ in range(repeats - 1):
        cache.crop(-steps)
        runs.append(time_ms(device, lambda: [engine.prefill(cache, [7], 1024 + i) for i in range(steps)]) / steps)
    figures["decode ms/token"] = statistics.median(runs)
    prefix = "def f(x):\n    return x\n" * 60
    engine.complete(CompletionRequest(prefix=prefix, max_new_tokens=1, cache_key="doc"))
    runs = []
    for i in range(repeats):
        edited = prefix + "y" * (i + 1)  # one more typed character each time: a one-token edit
        request = CompletionRequest(prefix=edited, max_new_tokens=32, cache_key="doc", ignore_eos=True, token_healing=False)
        runs.append(time_ms(device, lambda request=request: engine.complete(request)))
    figures["warm 32-token completion ms"] = statistics.median(runs)
    return figures


def fast_decode_ms_per_token(engine, device: str, repeats: int) -> float:
    """The fast step one token per forward (no drafts) after a 1024-token prefill: ms/token."""
    from model_runtime.fast_decode import GreedyDecoder

    decoder = GreedyDecoder(engine.static, engine.table.size, sorted(engine.table.stop_ids))
    tokens = list(range(10, 10 + 1024))
    steps, runs = 64, []
    for _ in range(repeats):
        cache = engine_new_cache(engine)
        first = int(engine.prefill(cache, tokens, 0)[: engine.table.size].argmax())
        history = list(tokens)
        generator = decoder.tokens(cache, history, first, ban_stops=True)
        next(generator)  # the first forward outside the timing (allocation)

        def run(generator=generator):
            for _ in range(steps):
                next(generator)

        runs.append(time_ms(device, run) / steps)
    return statistics.median(runs)


def greedy_ids(engine, decoder, prompt: list[int], count: int, reuse: int | None = None, extra=()) -> list[int]:
    """``count`` greedy ids after ``prompt``: the static loop (``decoder`` None) or the fast step.
    ``reuse``: prefill ``prompt`` first with its last tokens altered, crop back to ``reuse`` and
    prefill the real delta (the KV reuse of the engine, with a stale tail in the buffer)."""
    from model_runtime.fast_decode import GreedyDecoder

    cache = engine_new_cache(engine)
    if reuse is not None:
        engine.prefill(cache, prompt[:reuse] + [(t + 1) % 4000 for t in prompt[reuse:]], 0)
        cache.crop(reuse - cache.get_seq_length())
    start = reuse or 0
    logits = engine.prefill(cache, prompt[start:], start)[: engine.table.size]
    out = [int(logits.argmax())]
    if decoder is None:
        while len(out) < count:
            logits = engine.prefill(cache, [out[-1]], len(prompt) + len(out) - 1)[: engine.table.size]
            out.append(int(logits.argmax()))
        return out
    assert isinstance(decoder, GreedyDecoder)
    for token, _ in decoder.tokens(cache, list(prompt), out[0], ban_stops=True, extra=extra):
        out.append(token)
        if len(out) == count:
            break
    return out


def check_fast_equals_static(model_dir: str, device: str) -> None:
    """fp32 greedy tokens of the static loop and the fast step (drafts 0 and 8): equal, or exit 1."""
    from model_runtime.fast_decode import GreedyDecoder

    engine = load_engine(LoadOptions(model=model_dir, device=device, dtype="fp32"))
    # Repetitive text so that prompt-lookup drafts are proposed and some accepted.
    prompt = [10 + (i * 7) % 97 for i in range(300)] + list(range(400, 460)) * 2
    failures = []
    for reuse in (None, len(prompt) - 5):
        reference = greedy_ids(engine, None, prompt, 48, reuse)
        # Drafts from the prompt alone (mostly rejected), and from a source holding the expected
        # continuation with a wrong token planted in it (accepted runs, then a rejection).
        planted = reference[:20] + [(reference[20] + 1) % 4000] + reference[21:]
        for drafts, extra in ((0, ()), (8, ()), (8, planted)):
            decoder = GreedyDecoder(engine.static, engine.table.size, sorted(engine.table.stop_ids), draft_tokens=drafts)
            got = greedy_ids(engine, decoder, prompt, 48, reuse, extra)
            label = f"drafts {drafts}{' from the planted continuation' if extra else ''}, {'after a crop and a delta prefill' if reuse else 'cold'}"
            print(f"fp32 check, {label}: {'equal' if got == reference else 'MISMATCH'} ({len(got)} tokens, {decoder.stats_accepted} drafts accepted)")
            if got != reference:
                failures.append(f"{label}\n  static: {reference}\n  fast:   {got}")
    del engine
    if device == "cuda":
        torch.cuda.empty_cache()
    if failures:
        print("FAILED: the fast step's greedy tokens differ from the static loop's in fp32:\n" + "\n".join(failures), file=sys.stderr)
        raise SystemExit(1)


def engine_new_cache(engine):
    from transformers import DynamicCache

    return engine.static.new_cache() if engine.static else DynamicCache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="santacoder", help="'santacoder' or n_embd x layers, e.g. 256x4")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="bf16,int8,nf4", help="comma list of bf16, fp32, int8, nf4")
    parser.add_argument("--paths", default="transformers,static,fast", help="comma list of transformers, static, fast")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-check", action="store_true", help="skip the fp32 comparison of the static and fast tokens")
    args = parser.parse_args()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    started = time.perf_counter()
    if not args.skip_check:
        check_dir = build_model(args.shape, peaked=True)
        check_fast_equals_static(check_dir, device)
        shutil.rmtree(check_dir, ignore_errors=True)
    model_dir = build_model(args.shape)
    bandwidth = copy_bandwidth_bytes_per_s(device)
    name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    print(f"shape {args.shape} on {device} ({name}); copy bandwidth {bandwidth / 1e9:.0f} GB/s; torch threads {torch.get_num_threads()}")
    header, mismatches = None, []
    for precision in args.precisions.split(","):
        dtype, quantization = (precision, "none") if precision in ("bf16", "fp32", "fp16") else ("bf16" if device == "cuda" else "fp32", precision)
        static_text = None
        for path in args.paths.split(","):
            options = dict(model=model_dir, device=device, dtype=dtype, quantization=quantization, static_decode=path != "transformers", fast_decode=path == "fast")
            try:
                engine = load_engine(LoadOptions(**options))
            except Exception as error:  # noqa: BLE001 - e.g. bitsandbytes missing on this machine: say so, go on
                print(f"{precision:9} {path:12} skipped: {str(error).splitlines()[0][:160]}")
                continue
            if path == "fast" and engine.fast is None:
                print(f"{precision:9} {path:12} skipped: the fast step does not apply (quantized or not multi-query)")
                continue
            figures = measure(engine, device, args.repeats)
            if path == "fast":
                figures["decode ms/token"] = fast_decode_ms_per_token(engine, device, args.repeats)
            floor_ms = weight_bytes(engine.model) / bandwidth * 1000
            figures["floor ms/token"] = floor_ms
            figures["fraction of floor"] = floor_ms / figures["decode ms/token"]
            text = completion_text(engine)
            same = ""
            if path == "static":
                static_text = text
            elif path == "fast" and static_text is not None:
                same = "same text" if text == static_text else "TEXT DIFFERS"
                if text != static_text:
                    mismatches.append((precision, static_text, text))
            if header is None:
                header = list(figures)
                print(f"{'precision':9} {'path':12} " + " ".join(f"{name:>16}" for name in header))
            print(f"{precision:9} {path:12} " + " ".join(f"{figures[name]:16.2f}" for name in header) + f"  {same}")
            del engine
            if device == "cuda":
                torch.cuda.empty_cache()
    print(f"total {time.perf_counter() - started:.0f} s")
    for precision, expected, got in mismatches:
        print(f"{precision}: the fast path's 32-token completion differs from the static path's:\n  static: {expected!r}\n  fast:   {got!r}", file=sys.stderr)
    if any(precision == "fp32" for precision, _, _ in mismatches):
        raise SystemExit(1)


def completion_text(engine) -> str:
    """A greedy 32-token completion (forced length) of a fixed prompt, cold."""
    engine.kv_store.clear()
    request = CompletionRequest(prefix="def f(x):\n    return x\n" * 30, max_new_tokens=32, ignore_eos=True, token_healing=False)
    return engine.complete(request).text


if __name__ == "__main__":
    import torch

    with torch.inference_mode():  # the engine's step functions leave the autograd context to the caller
        main()
