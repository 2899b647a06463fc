"""Export a training checkpoint as a Hugging Face model directory (the bundled model's form).

``python -m training.export --checkpoint runs/tiny/checkpoints/step-00001500.pt
--out model_runtime/bundled/tiny [--eval-json runs/eval.json]``

The directory loads with ``AutoModelForCausalLM.from_pretrained(dir)`` and
``AutoTokenizer.from_pretrained(dir)``: ``config.json``, ``generation_config.json``,
``model.safetensors`` (fp32 by default; ``--dtype bf16`` halves it and still loads as fp32
when asked), the tokenizer files and a model card ``README.md`` stating the data, its licence,
the size, the training budget and, when ``--eval-json`` names the output of
``benchmarks/eval_infill.py --json``, the evaluation figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Sequence

import torch
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from . import checkpoint as ckpt
from .tokenizer import FIM_PAD

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_model(saved: dict) -> GPTBigCodeForCausalLM:
    """The model of a checkpoint payload, fp32, in eval mode."""
    model = GPTBigCodeForCausalLM(GPTBigCodeConfig.from_dict(saved["config"]))
    model.load_state_dict(saved["model"])
    return model.eval()


def _paired_section(evaluation: dict) -> str:
    """The card's table for ``eval_infill.py --models A,B --json``: both models on the same lines."""
    before, after = evaluation["models"]
    lines = [
        f"Paired against `{before}` on the same lines (`{evaluation.get('command', 'benchmarks/eval_infill.py')}`): single-line",
        f"infilling, {evaluation.get('order', 'spm').upper()}, greedy, at most 25 new tokens, stop at the first newline, stripped",
        "comparison; loss is the mean per-token loss of the missing line.",
        "",
        "| dataset | lines | exact, before | exact, this | difference [95% paired] | loss, before | loss, this | difference [95%] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, figures in evaluation["datasets"].items():
        a, b = figures["summaries"][before], figures["summaries"][after]
        exact, loss = figures["comparison"]["exact_match"], figures["comparison"]["loss"]
        lines.append(
            f"| {name} | {a['examples']} | {a['exact_match']:.4f} | {b['exact_match']:.4f} | {exact['difference']:+.4f} "
            f"[{exact['interval'][0]:+.4f}, {exact['interval'][1]:+.4f}] | {a['loss_nats_per_token']:.3f} | "
            f"{b['loss_nats_per_token']:.3f} | {loss['difference']:+.3f} [{loss['interval'][0]:+.3f}, {loss['interval'][1]:+.3f}] |"
        )
    return "\n".join(lines) + "\n"


def _evaluation_section(evaluation: dict | None) -> str:
    if not evaluation:
        return "Not evaluated yet: run `python benchmarks/eval_infill.py --model tiny`.\n"
    if "models" in evaluation:
        return _paired_section(evaluation)
    lines = [
        f"Single-line infilling exact match (`{evaluation.get('command', 'benchmarks/eval_infill.py')}`;",
        "greedy, at most 25 new tokens, stop at the first newline, stripped comparison):",
        "",
        "| dataset | examples | PSM | SPM | empty baseline |",
        "|---|---|---|---|---|",
    ]
    for name, figures in evaluation["datasets"].items():
        lines.append(
            f"| {name} | {figures['examples']} | {figures['psm']:.3f} | {figures['spm']:.3f} | {figures['empty']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _schedule_note(saved: dict) -> str:
    changes = saved.get("schedule_history") or []
    return "".join(f"; at step {step} the schedule was re-stretched from {old} to {new} steps" for step, old, new in changes)


def _line_fim_note(saved: dict) -> str:
    started = saved.get("line_fim_from_step")
    return f" from step {started} on" if started else ""


def _origin(saved: dict) -> str:
    started = saved.get("init_from")
    return f"(continuing from the weights of `{started}`, see below)" if started else "from scratch"


def _precision(saved: dict) -> str:
    if saved.get("autocast"):
        return f", {saved['autocast']} autocast"
    precision = saved["args"].get("precision", "fp32")
    return "" if precision == "fp32" else f", precision {precision}"


def _hardware(saved: dict) -> str:
    device = saved.get("device", "cpu")
    return f"the CPU, {saved['args']['threads']} threads" if device == "cpu" else f"one {device} GPU"


def _packages_section(saved: dict) -> str:
    """The PyPI packages the run trained on, with versions, licences and attribution (if any)."""
    corpus = saved.get("corpus") or {}
    packages = corpus.get("packages") or []
    if not packages:
        return ""
    sources = corpus.get("sources", {})
    lines = ["", "Also Python files of these PyPI packages (pinned in `training/packages.txt`; vendored copies,",
             "generated files, duplicates and copies of held-out files dropped, see `training/corpus.py`).",
             "Each is the work of its authors, under its own licence:", "",
             "| package | version | licence | copyright / attribution | files | M chars |", "|---|---|---|---|---|---|"]
    for package in packages:
        size = sources.get(package["name"], {})
        lines.append(f"| {package['name']} | {package['version']} | {package['licence']} | {package['attribution']} "
                     f"| {size.get('files', 0)} | {size.get('chars', 0) / 1e6:.1f} |")
    stdlib = sources.get("stdlib", {})
    lines += ["", f"Standard library: {stdlib.get('files', 0)} files, {stdlib.get('chars', 0) / 1e6:.1f} M chars, "
              f"sampled {saved['args'].get('stdlib_weight', 1)}x per epoch."]
    return "\n".join(lines) + "\n"


def write_model_card(out_dir: Path, saved: dict, parameters: int, evaluation: dict | None, note: str = "") -> None:
    """Write ``README.md``: data, licence, size, training budget and evaluation."""
    args, config = saved["args"], saved["config"]
    size_mb = sum(f.stat().st_size for f in out_dir.glob("*.safetensors")) / 1e6
    card = f"""# tiny: the project's bundled fill-in-the-middle model

A {parameters / 1e6:.1f} M-parameter `GPTBigCodeForCausalLM` (multi-query attention, {config['n_layer']} layers,
n_embd {config['n_embd']}, {config['n_head']} heads, {config['n_positions']} positions, vocabulary {config['vocab_size']})
trained {_origin(saved)} by `python -m training.train`, so the project completes code
offline out of the box. It is a toy next to SantaCoder: expect short, local completions.

## Data and licence

Python files of the CPython {saved.get('python', platform.python_version())} standard library
(test folders included; generated codec tables, `pydoc_data` and site-packages excluded), see
`training/corpus.py`. The held-out files listed in
`training/heldout_files.txt` (about 4%, chosen by a hash of the path) were not trained
on. The CPython standard library is distributed under the Python Software Foundation License
(PSF-2.0); the weights are derived from it.
{_packages_section(saved)}
Tokenizer: byte-level BPE with {config['vocab_size']} tokens trained on the training split; ids 0..4 are
`<|endoftext|> <fim-prefix> <fim-middle> <fim-suffix> <fim-pad>` (SantaCoder's names).

## Training

- Objective: next-token prediction on rows of exactly {args['n_positions']} tokens packed with
  {args['plain_rate']:.0%} plain, {args['psm_rate']:.0%} PSM and {args['spm_rate']:.0%} SPM samples
  (SPM is SantaCoder's variant `<fim-prefix><fim-suffix> S <fim-middle> P M`); the middle of a
  FIM sample is cut at two random character positions, or, for {args.get('line_fim_rate', 0.0):.0%} of FIM
  samples{_line_fim_note(saved)}, is one to three whole lines.
- Budget: {saved['step']} steps of {args['batch_rows']} x {args['n_positions']} tokens = {saved['tokens'] / 1e6:.1f} M tokens,
  {saved['elapsed_s'] / 60:.0f} minutes of training steps on {_hardware(saved)}{_precision(saved)} (seed {args['seed']}).
- AdamW (betas 0.9/0.95, weight decay {args['weight_decay']}), peak learning rate {args['lr']}, {args['warmup_steps']} warmup
  steps, cosine decay to {args['min_lr_ratio']} of the peak over {args['steps']} steps{_schedule_note(saved)}, gradient clip {args['grad_clip']}.
- Training loss at this checkpoint (its last step): {saved['loss']:.3f}.
- Weights: `model.safetensors`, {size_mb:.1f} MB.
{f"- {note}" + chr(10) if note else ""}
## Evaluation

{_evaluation_section(evaluation)}"""
    (out_dir / "README.md").write_text(card, encoding="utf-8")


def export_checkpoint(
    checkpoint_path: Path, out_dir: Path, dtype: str = "fp32", evaluation: dict | None = None, note: str = ""
) -> Path:
    """Write the model directory for ``checkpoint_path`` into ``out_dir`` and return ``out_dir``."""
    saved = ckpt.load_checkpoint(checkpoint_path)
    model = build_model(saved)
    model.generation_config.pad_token_id = model.config.pad_token_id
    parameters = sum(p.numel() for p in model.parameters())
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.safetensors"):
        stale.unlink()
    model.to(_DTYPES[dtype]).save_pretrained(out_dir)
    tokenizer = ckpt.tokenizer_from_json(saved["tokenizer_json"])
    tokenizer.pad_token = FIM_PAD
    tokenizer.model_max_length = model.config.n_positions
    tokenizer.save_pretrained(out_dir)
    write_model_card(out_dir, saved, parameters, evaluation, note)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a .pt file, or a run directory (newest checkpoint)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="fp32")
    parser.add_argument("--eval-json", type=Path, help="output of benchmarks/eval_infill.py --json (one model, or the paired --models form), for the model card")
    parser.add_argument("--note", default="", help="one more line for the card's training section (e.g. a resume history)")
    args = parser.parse_args(argv)
    path = args.checkpoint if args.checkpoint.is_file() else ckpt.latest_checkpoint(args.checkpoint)
    if path is None:
        parser.error(f"no checkpoint in {args.checkpoint}")
    evaluation = json.loads(args.eval_json.read_text()) if args.eval_json else None
    export_checkpoint(path, args.out, args.dtype, evaluation, args.note)
    print(f"exported {path} to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
