"""Train the bundled tiny FIM model: ``python -m training.train --out runs/tiny --seed 0``.

One command, one seed: the tokenizer is trained on the training split (byte-level BPE, ids
0..4 = ``<|endoftext|> <fim-prefix> <fim-middle> <fim-suffix> <fim-pad>``), then a
multi-query ``GPTBigCodeForCausalLM`` is trained on packed rows of exactly ``n_positions``
tokens (``rows.py``) mixing plain, PSM and SPM samples (``samples.py``) with AdamW, linear
warmup and cosine decay to ``min_lr_ratio`` of the peak.

Device ``auto`` picks CUDA when available (bf16 autocast) and the CPU otherwise (fp32).
Progress goes to stderr (tqdm: loss, tokens/s); ``<out>/metrics.jsonl`` gets one line per log
interval and ``<out>/checkpoints/`` a checkpoint every ``--checkpoint-every`` steps and at the
end. ``--resume`` continues from the newest checkpoint with its saved arguments; only
``--threads``, ``--device``, ``--checkpoint-every``, ``--log-every`` and ``--steps`` may be
given again (a larger ``--steps`` re-stretches the cosine from the current step). On a GPU machine, pass
``--corpus`` a file written by ``python -m training.corpus pack``.

``--init-from DIR`` (an exported model directory, or a bundled name such as ``tiny``) starts a
new run from that model's weights and tokenizer instead of random ones, with a fresh optimizer
and schedule: the way to keep training the shipped model with another data mix. Its
architecture wins over the size flags.

``--precision auto`` runs the forward pass under bf16 autocast on CUDA and on CPUs whose oneDNN
has bf16 kernels (AVX-512 BF16 or AMX; measured 1.5x the tokens/s of fp32 on a 2-core EPYC with
the bundled model's shape), fp32 elsewhere; weights and optimizer state stay fp32 either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from . import checkpoint as ckpt
from .corpus import PACKAGE_LIST, STDLIB_SOURCE, load_documents, read_package_list, split_documents
from .rows import RowStream
from .samples import SampleMix, SpecialIds
from .tokenizer import train_tokenizer

# ``steps`` may grow on resume: the cosine is then re-stretched from the current step on.
_CHANGEABLE_ON_RESUME = ("threads", "device", "precision", "checkpoint_every", "log_every", "steps")
_ARCHITECTURE = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainArgs:
    out: str = "runs/tiny"
    seed: int = 0
    corpus: str | None = None  # a pack file; None: the running interpreter's stdlib
    vocab_size: int = 4096
    n_positions: int = 512
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 8
    batch_rows: int = 8
    steps: int = 2000
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    plain_rate: float = 0.1
    psm_rate: float = 0.25
    spm_rate: float = 0.65  # the server prompts in SPM
    line_fim_rate: float = 0.7  # share of FIM samples with line-aligned middles (samples.py)
    rest_of_line_rate: float = 0.4  # share of those cut inside the line, ending at its end
    context_rate: float = 0.15  # share of FIM samples with related-file chunks in front (rows.py)
    stdlib_weight: int = 2  # the standard library's training files are sampled this many times per epoch
    min_fim_tokens: int = 0  # 0: a FIM sample fills the row's room; else its length is drawn from [this, room]
    checkpoint_every: int = 100
    log_every: int = 10
    threads: int = 2
    device: str = "auto"
    precision: str = "auto"  # auto | bf16 | fp32: autocast of the forward pass (see the module text)
    init_from: str | None = None  # an exported model directory or bundled name to start from


def parse_args(argv: Sequence[str] | None) -> tuple[TrainArgs, bool, set[str]]:
    """(arguments, resume?, names given explicitly) from the command line; every ``TrainArgs`` field is a flag."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field in fields(TrainArgs):
        kind = {"int": int, "float": float}.get(str(field.type), str)
        parser.add_argument("--" + field.name.replace("_", "-"), type=kind, default=None, help=f"default {field.default}")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    namespace = vars(parser.parse_args(argv))
    resume = namespace.pop("resume")
    given = {name for name, value in namespace.items() if value is not None}
    return TrainArgs(**{name: namespace[name] for name in given}), resume, given


def merge_resumed_args(saved: dict, args: TrainArgs, given: set[str]) -> TrainArgs:
    """The saved arguments of a run, with the explicitly given changeable ones applied.

    Settings newer than the checkpoint (absent from ``saved``) take the given value or the default.
    """
    fixed = sorted(
        name for name in given - {"out", *_CHANGEABLE_ON_RESUME} if name in saved and getattr(args, name) != saved[name]
    )
    if fixed:
        raise SystemExit(f"--resume keeps the run's settings; these cannot change: {', '.join(fixed)}")
    changes = {name: getattr(args, name) for name in given if name in _CHANGEABLE_ON_RESUME or name not in saved}
    # The run directory is where this resume was pointed at, even if the run was copied or
    # moved there (the saved value would send new checkpoints back to the old place).
    changes["out"] = args.out
    return TrainArgs(**{**saved, **changes})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain fp32."""
    if precision not in PRECISIONS:
        raise SystemExit(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu":
        supported = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        if supported:
            return torch.bfloat16
        if precision == "bf16":
            raise SystemExit("--precision bf16: this CPU has no bf16 kernels (AVX-512 BF16 or AMX); use fp32")
    return None


def resolve_init_dir(name: str) -> Path:
    """The model directory of ``--init-from``: a path, or the name of a bundled model."""
    from model_runtime.loader import BUNDLED_DIR

    for candidate in (Path(name), BUNDLED_DIR / name):
        if (candidate / "config.json").is_file() and (candidate / "tokenizer.json").is_file():
            return candidate
    raise SystemExit(f"--init-from {name}: not a model directory (config.json and tokenizer.json) or bundled name")


def load_init_model(directory: Path) -> tuple[GPTBigCodeForCausalLM, object]:
    """(fp32 model, training tokenizer) of an exported model directory."""
    model = GPTBigCodeForCausalLM.from_pretrained(directory, dtype=torch.float32)
    tokenizer = ckpt.tokenizer_from_json((directory / "tokenizer.json").read_text(encoding="utf-8"))
    return model, tokenizer


def build_config(args: TrainArgs, special: SpecialIds) -> GPTBigCodeConfig:
    return GPTBigCodeConfig(
        vocab_size=args.vocab_size,
        n_positions=args.n_positions,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_inner=4 * args.n_embd,
        multi_query=True,
        # Dropout off: the model sees each token only a few times and is far from overfitting.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=special.end_of_text,
        eos_token_id=special.end_of_text,
        pad_token_id=special.fim_pad,
    )


def build_optimizer(model: torch.nn.Module, args: TrainArgs) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def learning_rate(step: int, args: TrainArgs) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from ``lr`` to ``lr * min_lr_ratio``."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps))
    floor = args.lr * args.min_lr_ratio
    return floor + (args.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_step(
    model, optimizer, batch: tuple[torch.Tensor, torch.Tensor], device, lr: float, args: TrainArgs,
    autocast: torch.dtype | None = None,
) -> float:
    """One optimizer step on ``batch`` (input ids, labels: [B, T]) under ``autocast`` (None: fp32); returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    input_ids, labels = (tensor.to(device, non_blocking=True) for tensor in batch)  # [B, T]
    context = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with context:
        loss = model(input_ids=input_ids, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


@dataclass
class _Session:
    """Everything a training loop mutates; ``extra`` is run history that the model card reports."""

    model: GPTBigCodeForCausalLM
    optimizer: torch.optim.AdamW
    stream: RowStream
    device: torch.device
    tokenizer_json: str
    extra: dict
    autocast: torch.dtype | None = None  # resolved once from --precision and the device
    step: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    loss: float = float("nan")

    def payload(self, args: TrainArgs) -> dict:
        """The checkpoint contents (see ``checkpoint.py``)."""
        return {
            **self.extra,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "config": self.model.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rows": self.stream.state_dict(),
            "rng": ckpt.capture_rng_state(),
            "args": asdict(args),
            "tokenizer_json": self.tokenizer_json,
            "tokens": self.tokens,
            "elapsed_s": self.elapsed_s,
            "loss": self.loss,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "autocast": "bf16" if self.autocast is torch.bfloat16 else None,
            "python": platform.python_version(),
        }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def weight_stdlib(documents: list, copies: int) -> list:
    """``documents`` with the standard library's ones ``copies`` times (each epoch samples them that often)."""
    return documents + [document for document in documents if document.source == STDLIB_SOURCE] * max(0, copies - 1)


def corpus_summary(documents) -> dict:
    """What the run trains on, for the model card: per source files and characters (training split,
    before the standard library's up-weighting), and the pinned packages among the sources."""
    sources: dict[str, dict[str, int]] = {}
    for document in documents:
        entry = sources.setdefault(document.source or STDLIB_SOURCE, {"files": 0, "chars": 0})
        entry["files"] += 1
        entry["chars"] += len(document.text)
    specs = read_package_list(PACKAGE_LIST) if set(sources) - {STDLIB_SOURCE} else []
    packages = [
        {"name": spec.name, "version": spec.version, "licence": spec.licence, "attribution": spec.attribution}
        for spec in specs if spec.name in sources
    ]
    return {"sources": sources, "packages": packages}


def _resumed_history(saved: dict, args: TrainArgs) -> dict:
    """Run history carried across resumes: when whole-line middles began, schedule changes."""
    history = {
        key: saved[key] for key in ("line_fim_from_step", "schedule_history", "init_from") if saved.get(key) is not None
    }
    if "line_fim_rate" not in saved["args"]:  # a run started before whole-line middles existed
        history["line_fim_from_step"] = saved["step"]
    if args.steps != saved["args"]["steps"]:
        changes = history.get("schedule_history", [])
        history["schedule_history"] = [*changes, [saved["step"], saved["args"]["steps"], args.steps]]
    return history


def _start(args: TrainArgs, resume: bool, given: set[str]) -> tuple[TrainArgs, _Session]:
    """Build (or restore from the newest checkpoint of ``args.out``) the model, data and optimizer."""
    saved = None
    if resume:
        latest = ckpt.latest_checkpoint(Path(args.out))
        if latest is None:
            raise SystemExit(f"--resume: no checkpoint in {ckpt.checkpoint_dir(Path(args.out))}")
        saved = ckpt.load_checkpoint(latest)
        args = merge_resumed_args(saved["args"], args, given)
    torch.set_num_threads(args.threads)
    documents, _ = split_documents(load_documents(Path(args.corpus) if args.corpus else None))
    initial = None
    if saved:
        tokenizer = ckpt.tokenizer_from_json(saved["tokenizer_json"])
    elif args.init_from:
        init_dir = resolve_init_dir(args.init_from)
        initial, tokenizer = load_init_model(init_dir)
        config = initial.config
        args = replace(args, **{name: getattr(config, name) for name in _ARCHITECTURE})
        _log(f"starting from the weights of {init_dir}")
    else:
        _log(f"training a {args.vocab_size}-token BPE on {len(documents)} files")
        tokenizer = train_tokenizer([document.text for document in documents], args.vocab_size)
    mix = SampleMix(
        args.plain_rate, args.psm_rate, args.spm_rate, args.line_fim_rate, args.rest_of_line_rate, args.context_rate
    )
    corpus = corpus_summary(documents)
    # Documents are tokenized when the row stream opens them (rows.py): no start-up pass over the corpus.
    weighted = weight_stdlib(documents, args.stdlib_weight)
    stream = RowStream(tokenizer, weighted, args.n_positions, args.seed, mix, min_fim_tokens=args.min_fim_tokens)
    torch.manual_seed(args.seed)
    model = initial or GPTBigCodeForCausalLM(build_config(args, SpecialIds.from_tokenizer(tokenizer)))
    optimizer = build_optimizer(model, args)
    device = resolve_device(args.device)
    session = _Session(
        model, optimizer, stream, device, ckpt.tokenizer_to_json(tokenizer), {}, autocast_dtype(args.precision, device)
    )
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        stream.load_state_dict(saved["rows"])
        ckpt.restore_rng_state(saved["rng"])
        session.extra = _resumed_history(saved, args)
        session.step, session.tokens = saved["step"], saved["tokens"]
        session.elapsed_s, session.loss = saved["elapsed_s"], saved["loss"]
    elif initial is not None:
        session.extra = {"init_from": str(args.init_from)}
    session.extra["corpus"] = corpus
    model.to(session.device).train()
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.to(session.device)
    return args, session


def _train_loop(session: _Session, args: TrainArgs, run_dir: Path) -> Path | None:
    """Run steps until ``args.steps``, logging and checkpointing; returns the last checkpoint written."""
    path, row_tokens = None, args.batch_rows * args.n_positions
    smoothed = None if math.isnan(session.loss) else session.loss
    bar = tqdm(total=args.steps, initial=session.step, file=sys.stderr, dynamic_ncols=True, smoothing=0.05)
    with (run_dir / "metrics.jsonl").open("a") as metrics:
        while session.step < args.steps:
            started = time.perf_counter()
            lr = learning_rate(session.step, args)
            batch = session.stream.next_batch(args.batch_rows)
            session.loss = train_step(session.model, session.optimizer, batch, session.device, lr, args, session.autocast)
            step_s = time.perf_counter() - started
            session.step, session.elapsed_s, session.tokens = session.step + 1, session.elapsed_s + step_s, session.tokens + row_tokens
            smoothed = session.loss if smoothed is None else 0.95 * smoothed + 0.05 * session.loss
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.3f}", tok_s=f"{row_tokens / step_s:.0f}")
            if session.step % args.log_every == 0 or session.step == args.steps:
                row = {"step": session.step, "loss": session.loss, "smoothed_loss": smoothed, "lr": lr,
                       "tokens": session.tokens, "elapsed_s": round(session.elapsed_s, 1), "epoch": session.stream.epoch}
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
            if session.step % args.checkpoint_every == 0 or session.step == args.steps:
                path = ckpt.save_checkpoint(run_dir, session.step, session.payload(args))
    bar.close()
    _log(f"done: step {session.step}, loss {session.loss if smoothed is None else smoothed:.3f}, "
         f"{session.tokens / 1e6:.1f} M tokens, {session.elapsed_s / 60:.1f} min")
    return path


def run(args: TrainArgs, resume: bool, given: set[str] | None = None) -> Path | None:
    """Train (or resume) into ``args.out``; returns the final checkpoint path (None: none was written).

    On resume the saved arguments win, except those in ``given`` (explicit flags) that may change.
    """
    args, session = _start(args, resume, given if given is not None else set())
    run_dir = Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "train_args.json").write_text(json.dumps(asdict(args), indent=2) + "\n")
    parameters = sum(p.numel() for p in session.model.parameters())
    _log(f"{parameters / 1e6:.2f} M parameters on {session.device}; step {session.step} of {args.steps}")
    return _train_loop(session, args, run_dir) or ckpt.latest_checkpoint(run_dir)


def main(argv: Sequence[str] | None = None) -> int:
    args, resume, given = parse_args(argv)
    run(args, resume, given)
    return 0


if __name__ == "__main__":
    sys.exit(main())
