"""Decode speed of a randomly initialised model of SantaCoder's exact shape.

Random weights cost the same time as trained ones; generation is forced to a fixed length
(``ignore_eos``). For each precision and decode path it prints, from one run:
prefill ms for 256/1024/1792 tokens, decode ms/token, end-to-end ms of a 32-token completion
after a one-token edit with a warm KV cache, and the bandwidth floor (weight bytes / measured
copy bandwidth) with the fraction of it reached.

  python benchmarks/decode_speed.py                       # SantaCoder shape, CUDA if present
  python benchmarks/decode_speed.py --shape 256x4 --precisions fp32   # a CPU smoke run
"""

from __future__ import annotations

import argparse
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


def build_model(shape: str) -> str:
    """Save a random multi-query GPTBigCode (weights in bf16 for the full shape) and a tokenizer."""
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    from tests.model_factory import build_tokenizer

    if shape == "santacoder":
        sizes = SANTACODER
    else:
        n_embd, n_layer = (int(x) for x in shape.split("x"))
        sizes = dict(n_embd=n_embd, n_layer=n_layer, n_head=max(1, n_embd // 128), n_positions=2048, vocab_size=4096)
    tokenizer = build_tokenizer(vocab_size=4096)  # the model's extra vocabulary rows act as padding
    config = GPTBigCodeConfig(multi_query=True, bos_token_id=0, eos_token_id=0, **sizes)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = GPTBigCodeForCausalLM(config).to(torch.bfloat16 if shape == "santacoder" else torch.float32)
    target = Path(tempfile.mkdtemp(prefix="decode-speed-"))
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
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


def engine_new_cache(engine):
    from transformers import DynamicCache

    return engine.static.new_cache() if engine.static else DynamicCache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="santacoder", help="'santacoder' or n_embd x layers, e.g. 256x4")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="bf16,int8,nf4", help="comma list of bf16, fp32, int8, nf4")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    model_dir = build_model(args.shape)
    bandwidth = copy_bandwidth_bytes_per_s(device)
    print(f"shape {args.shape} on {device}; copy bandwidth {bandwidth / 1e9:.0f} GB/s")
    header = None
    for precision in args.precisions.split(","):
        dtype, quantization = (precision, "none") if precision in ("bf16", "fp32", "fp16") else ("bf16" if device == "cuda" else "fp32", precision)
        for path, static in (("transformers", False), ("static", True)):
            engine = load_engine(LoadOptions(model=model_dir, device=device, dtype=dtype, quantization=quantization, static_decode=static))
            figures = measure(engine, device, args.repeats)
            floor_ms = weight_bytes(engine.model) / bandwidth * 1000
            figures["floor ms/token"] = floor_ms
            figures["fraction of floor"] = floor_ms / figures["decode ms/token"]
            if header is None:
                header = list(figures)
                print(f"{'precision':9} {'path':12} " + " ".join(f"{name:>16}" for name in header))
            print(f"{precision:9} {path:12} " + " ".join(f"{figures[name]:16.2f}" for name in header))
            del engine
            if device == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    import torch

    with torch.inference_mode():  # the engine's step functions leave the autograd context to the caller
        main()
