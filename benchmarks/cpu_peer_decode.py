"""CPU decode ms/token of one random model in our runtime (int8, nf4, fp32) beside llama.cpp's
Q8_0 (and F32) of exactly the same weights.

    python benchmarks/cpu_peer_decode.py --llama-python ~/venvs/llama/bin/python           # SantaCoder's shape
    python benchmarks/cpu_peer_decode.py --shape 256x4 --precisions fp32 --llama-types f32,q8_0   # quick

The model is ``decode_speed.build_model``'s (random weights, SantaCoder's layout); it is exported
with ``training/gguf_export.py`` and run by llama.cpp through ``llama-cpp-python`` (in its own venv,
as a subprocess). Both decode one token per forward after the same ``--context`` token prefill,
one thread each unless ``--threads``; the figure is the median ms per token over ``--tokens``
tokens. Ours goes through the engine's static forward (``Engine.prefill`` with one token), which
quantized models use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from decode_speed import build_model  # noqa: E402

from model_runtime import LoadOptions, load_engine  # noqa: E402

LLAMA_SCRIPT = r"""
import json, statistics, sys, time
from llama_cpp import Llama
path, context, tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
started = time.perf_counter()
model = Llama(model_path=path, n_ctx=context + tokens + 8, n_threads=threads, n_threads_batch=threads, verbose=False)
loaded = time.perf_counter() - started
prompt = [10 + i % 3000 for i in range(context)]
model.eval(prompt)
times = []
for step in range(tokens):
    begin = time.perf_counter()
    model.eval([7 + step])
    times.append((time.perf_counter() - begin) * 1000)
print(json.dumps({"load_s": loaded, "ms_per_token": statistics.median(times)}))
"""


def ours_ms_per_token(model_dir: str, precision: str, context: int, tokens: int) -> tuple[float, float]:
    dtype, quantization = ("fp32", "none") if precision == "fp32" else ("fp32", precision)
    started = time.perf_counter()
    engine = load_engine(LoadOptions(model=model_dir, device="cpu", dtype=dtype, quantization=quantization))
    loaded = time.perf_counter() - started
    cache = engine.static.new_cache() if engine.static else None
    if cache is None:
        from transformers import DynamicCache

        cache = DynamicCache()
    with torch.inference_mode():
        engine.prefill(cache, [10 + i % 3000 for i in range(context)], 0)
        times = []
        for step in range(tokens):
            begin = time.perf_counter()
            int(engine.prefill(cache, [7 + step], context + step).argmax())
            times.append((time.perf_counter() - begin) * 1000)
    del engine
    return loaded, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="santacoder")
    parser.add_argument("--precisions", default="int8,fp32", help="ours: comma list of fp32, int8, nf4")
    parser.add_argument("--llama-types", default="q8_0", help="llama.cpp: comma list of f32, f16, q8_0")
    parser.add_argument("--llama-python", default=str(REPO / ".venv" / "bin" / "python"))
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model_dir = build_model(args.shape)
    print(f"shape {args.shape}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {args.threads} thread(s), "
          f"decode after {args.context} tokens, median of {args.tokens}; model built in {time.perf_counter() - started:.0f} s")  # fmt: skip
    print(f"{'engine':10} {'weights':8} {'load s':>8} {'ms/token':>10}")
    for precision in args.precisions.split(","):
        try:
            loaded, ms = ours_ms_per_token(model_dir, precision, args.context, args.tokens)
        except Exception as error:  # noqa: BLE001 - a precision this machine lacks: say so, go on
            print(f"{'ours':10} {precision:8} skipped: {str(error).splitlines()[0][:160]}")
            continue
        print(f"{'ours':10} {precision:8} {loaded:8.1f} {ms:10.1f}", flush=True)
    from training.gguf_export import export_gguf

    for kind in args.llama_types.split(","):
        gguf_path = Path(tempfile.mkdtemp(prefix="cpu-peer-")) / f"model-{kind}.gguf"
        begin = time.perf_counter()
        export_gguf(Path(model_dir), gguf_path, kind)
        exported = time.perf_counter() - begin
        command = [args.llama_python, "-c", LLAMA_SCRIPT, str(gguf_path), str(args.context), str(args.tokens), str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
        shutil.rmtree(gguf_path.parent, ignore_errors=True)
        if done.returncode != 0:
            print(f"{'llama.cpp':10} {kind:8} failed: {done.stderr.strip().splitlines()[-1][:160] if done.stderr.strip() else done.returncode}")
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{'llama.cpp':10} {kind:8} {figures['load_s']:8.1f} {figures['ms_per_token']:10.1f}   (GGUF export {exported:.0f} s)", flush=True)
    shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
