"""Training throughput of the bundled model's shape: fp32 against bf16 autocast, side by side.

    python benchmarks/train_throughput.py [--rows 8] [--steps 6] [--threads 2] [--rounds 2]

Builds a randomly initialised GPTBigCode of ``TrainArgs``' default shape and times the training
loop's own ``train_step`` (forward, backward, clipping, AdamW) on random ids, alternating the precisions in each
round so that both see the same machine load. Prints the median ms/step (first step of each
run is warm-up and dropped), tokens/s and the bf16/fp32 time ratio. bf16 runs only where
``training.train.autocast_dtype`` would pick it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    from transformers import GPTBigCodeForCausalLM

    from training.samples import SpecialIds
    from training.train import TrainArgs, autocast_dtype, build_config, build_optimizer, train_step

    torch.set_num_threads(args.threads)
    shape = TrainArgs()
    torch.manual_seed(0)
    model = GPTBigCodeForCausalLM(build_config(shape, SpecialIds(0, 1, 2, 3, 4))).train()
    optimizer = build_optimizer(model, shape)
    ids = torch.randint(5, shape.vocab_size, (args.rows, shape.n_positions))  # [B, T]
    cpu = torch.device("cpu")
    precisions = {"fp32": None}
    if autocast_dtype("auto", cpu) is torch.bfloat16:
        precisions["bf16"] = torch.bfloat16
    times: dict[str, list[float]] = {name: [] for name in precisions}
    for _ in range(args.rounds):
        for name, dtype in precisions.items():
            for step in range(args.steps):
                started = time.perf_counter()
                train_step(model, optimizer, (ids, ids), cpu, shape.lr, shape, dtype)
                if step:
                    times[name].append(time.perf_counter() - started)
    tokens = args.rows * shape.n_positions
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"{name:>5}: {seconds * 1000:7.0f} ms/step  {tokens / seconds:7.0f} tokens/s")
    if "bf16" in medians:
        print(f"bf16 / fp32 time: {medians['bf16'] / medians['fp32']:.2f}")
    else:
        print("bf16: this CPU has no bf16 kernels; training runs in fp32 here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
