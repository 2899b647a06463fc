"""The training pipeline of the bundled model: samples, split, rows, train/resume, export."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.model_factory import build_tokenizer
from training import checkpoint as ckpt
from training.corpus import (
    HELDOUT_LIST,
    STDLIB_DIR,
    Document,
    is_heldout,
    read_heldout_list,
    read_pack,
    split_documents,
    write_pack,
)
from training.export import export_checkpoint
from training.rows import IGNORE_INDEX, RowStream, index_documents
from training.samples import SampleMix, SpecialIds, build_sample, encode_text
from training.train import TrainArgs, run

SOURCE = 'def greet(name):\n    """Say hello."""\n    return f"hello {name}"  # <fim-prefix> stays text\n'
SMALL_FILES = ("bisect.py", "heapq.py", "fnmatch.py")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def ids(tokenizer):
    return SpecialIds.from_tokenizer(tokenizer)


def test_special_ids_are_santacoders_first_five(ids):
    assert (ids.end_of_text, ids.fim_prefix, ids.fim_middle, ids.fim_suffix, ids.fim_pad) == (0, 1, 2, 3, 4)


def _fim_pieces(sample: list[int], ids: SpecialIds, order: str) -> tuple[list[int], list[int], list[int]]:
    """(prefix, middle, suffix) ids of a FIM sample, asserting its exact layout."""
    assert sample[0] == ids.fim_prefix and sample[-1] == ids.end_of_text
    middle_at = sample.index(ids.fim_middle)
    if order == "psm":
        suffix_at = sample.index(ids.fim_suffix)
        prefix, suffix, tail = sample[1:suffix_at], sample[suffix_at + 1 : middle_at], sample[middle_at + 1 : -1]
        return prefix, tail, suffix
    assert sample[1] == ids.fim_suffix
    suffix, after = sample[2:middle_at], sample[middle_at + 1 : -1]
    return after, [], suffix  # SPM: P and M follow <fim-middle> back to back


@pytest.mark.parametrize("order", ["psm", "spm"])
def test_training_samples_use_the_runtimes_prompt_layout(tokenizer, ids, order):
    """A FIM sample is exactly the prompt the runtime would build, then the middle: the two
    layouts are one piece of code, so they cannot drift apart."""
    from model_runtime.fim import find_fim_tokens
    from training.samples import layout_fim

    runtime = find_fim_tokens(tokenizer.get_vocab())
    prefix, middle, suffix = [10, 11], [12], [13, 14, 15]
    assert layout_fim(ids, prefix, middle, suffix, order) == [*runtime.layout(prefix, suffix, order), *middle, ids.end_of_text]
    with pytest.raises(ValueError):
        layout_fim(ids, prefix, middle, suffix, "plain")


@pytest.mark.parametrize("order", ["psm", "spm"])
def test_fim_sample_layout_and_round_trip(tokenizer, ids, order):
    for seed in range(20):
        rng = random.Random(seed)
        sample = build_sample(tokenizer, ids, SOURCE, order, rng, ends_document=False)
        prefix_text, middle_text, suffix_text = _split_like(SOURCE, seed)
        first, second, suffix = _fim_pieces(sample, ids, order)
        assert suffix == encode_text(tokenizer, suffix_text)  # tokenized on its own
        if order == "psm":
            assert first == encode_text(tokenizer, prefix_text) and second == encode_text(tokenizer, middle_text)
        else:
            assert first == encode_text(tokenizer, prefix_text) + encode_text(tokenizer, middle_text)
        specials = {ids.end_of_text, ids.fim_prefix, ids.fim_middle, ids.fim_suffix, ids.fim_pad}
        assert not specials & set(first + second + suffix)  # the literal "<fim-prefix>" stays text
        assert tokenizer.decode(first + second) + tokenizer.decode(suffix) == SOURCE


def _split_like(text: str, seed: int) -> tuple[str, str, str]:
    rng = random.Random(seed)
    a, b = sorted(rng.randint(0, len(text)) for _ in range(2))
    return text[:a], text[a:b], text[b:]


def test_plain_sample_ends_with_end_of_text_only_at_document_end(tokenizer, ids):
    rng = random.Random(0)
    inside = build_sample(tokenizer, ids, SOURCE, "plain", rng, ends_document=False)
    last = build_sample(tokenizer, ids, SOURCE, "plain", rng, ends_document=True)
    assert inside == encode_text(tokenizer, SOURCE) and last == inside + [ids.end_of_text]
    assert tokenizer.decode(inside) == SOURCE


def test_heldout_split_is_deterministic_and_disjoint():
    listed = read_heldout_list(HELDOUT_LIST)
    assert listed and all(is_heldout(path) for path in listed)
    assert is_heldout("socket.py") and is_heldout("statistics.py") and not is_heldout("json/decoder.py")
    assert 0.03 < sum(map(is_heldout, (f"pkg/module_{i}.py" for i in range(5000)))) / 5000 < 0.05
    documents = [Document(path, "x = 1\n") for path in listed + ["json/decoder.py", "os.py", "ast.py"]]
    training, heldout = split_documents(documents)
    assert [d.path for d in heldout] == listed
    assert not {d.path for d in training} & set(listed)
    assert split_documents(documents) == (training, heldout)


def test_pack_round_trips(tmp_path):
    documents = [Document("a.py", "print(1)\n"), Document("pkg/b.py", "x = 'é'\n")]
    write_pack(documents, tmp_path / "corpus.jsonl.gz")
    assert read_pack(tmp_path / "corpus.jsonl.gz") == documents


def _small_documents() -> list[Document]:
    return [Document(name, (STDLIB_DIR / name).read_text(encoding="utf-8")) for name in SMALL_FILES]


def test_rows_are_full_length_and_resume_exactly(tokenizer, ids):
    indexed = index_documents(tokenizer, _small_documents())
    stream = RowStream(tokenizer, indexed, row_tokens=128, seed=3, mix=SampleMix(1 / 3, 1 / 3, 1 / 3))
    for _ in range(5):
        row, labels = stream.next_row()
        assert len(row) == len(labels) == 128
        assert all((label == IGNORE_INDEX) == (token == ids.fim_pad) for token, label in zip(row, labels))
    state = stream.state_dict()
    expected = [stream.next_row() for _ in range(4)]
    resumed = RowStream(tokenizer, indexed, row_tokens=128, seed=3, mix=SampleMix(1 / 3, 1 / 3, 1 / 3))
    resumed.load_state_dict(state)
    assert [resumed.next_row() for _ in range(4)] == expected


def _tiny_args(out: Path, corpus: Path, steps: int) -> TrainArgs:
    return TrainArgs(
        out=str(out), corpus=str(corpus), vocab_size=300, n_positions=64, n_embd=32, n_layer=1, n_head=2,
        batch_rows=4, steps=steps, lr=1e-2, warmup_steps=2, checkpoint_every=5, log_every=1, threads=1,
        device="cpu",
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    write_pack(_small_documents(), root / "corpus.jsonl.gz")
    final = run(_tiny_args(root / "run", root / "corpus.jsonl.gz", steps=20), resume=False)
    return root, final


def test_training_lowers_the_loss_and_checkpoints(trained_run):
    root, final = trained_run
    losses = [json.loads(line)["loss"] for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 20 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert final.name == "step-00000020.pt"
    assert [p.name for p in ckpt.list_checkpoints(root / "run")] == ["step-00000010.pt", "step-00000015.pt", final.name]


def test_resume_reproduces_the_uninterrupted_run(trained_run, tmp_path):
    root, final = trained_run
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    middle = ckpt.checkpoint_dir(root / "run") / "step-00000015.pt"
    (run_dir / "checkpoints" / middle.name).write_bytes(middle.read_bytes())
    resumed = run(_tiny_args(run_dir, root / "corpus.jsonl.gz", steps=20), resume=True)
    expected, got = ckpt.load_checkpoint(final)["model"], ckpt.load_checkpoint(resumed)["model"]
    assert all(torch.equal(expected[name], got[name]) for name in expected)


def test_export_writes_a_loadable_directory(trained_run, tmp_path):
    _, final = trained_run
    out = export_checkpoint(final, tmp_path / "tiny")
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.multi_query and model.config.pad_token_id == 4 and model.config.eos_token_id == 0
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>"]) == [0, 1, 2, 3]
    assert tokenizer.pad_token_id == 4 and tokenizer.model_max_length == model.config.n_positions == 64
    input_ids = torch.tensor([[1] + encode_text(tokenizer, "def f(x):\n") + [3, 2]])
    saved_model = GPTBigCodeFromCheckpoint(final)
    with torch.no_grad():
        assert torch.allclose(model(input_ids).logits, saved_model(input_ids).logits, atol=1e-5)


def GPTBigCodeFromCheckpoint(path: Path):
    from training.export import build_model

    return build_model(ckpt.load_checkpoint(path))


def test_resume_keeps_saved_settings_but_may_extend_steps():
    from training.train import merge_resumed_args, parse_args

    saved = {**TrainArgs().__dict__, "steps": 100, "lr": 1e-3, "out": "runs/where-it-started"}
    args, resume, given = parse_args(["--out", "runs/x", "--resume", "--steps", "300", "--threads", "1"])
    assert resume and given == {"out", "steps", "threads"}
    merged = merge_resumed_args(saved, args, given)
    assert (merged.steps, merged.threads, merged.lr) == (300, 1, 1e-3)
    assert merged.out == "runs/x"  # a copied run keeps writing where it was resumed
    args, _, given = parse_args(["--resume", "--lr", "5e-3"])
    with pytest.raises(SystemExit, match="lr"):
        merge_resumed_args(saved, args, given)


def test_whole_line_middles_match_the_benchmark_layout(tokenizer, ids):
    from training.samples import split_at_lines

    for seed in range(30):
        prefix, middle, suffix = split_at_lines(SOURCE, random.Random(seed))
        assert prefix + middle + suffix == SOURCE and not middle.endswith("\n")
        assert prefix == "" or prefix.endswith("\n")
        assert suffix == "" or suffix.startswith("\n")
        assert 1 <= middle.count("\n") + 1 <= 3
    sample = build_sample(tokenizer, ids, SOURCE, "psm", random.Random(0), ends_document=False, line_rate=1.0)
    first, second, suffix = _fim_pieces(sample, ids, "psm")
    assert tokenizer.decode(first).endswith("\n") or not first


def test_resume_history_records_schedule_changes():
    from training.train import _resumed_history

    saved = {"step": 1500, "args": {**TrainArgs(steps=1500).__dict__}}
    assert _resumed_history(saved, TrainArgs(steps=1500)) == {}
    assert _resumed_history(saved, TrainArgs(steps=3500)) == {"schedule_history": [[1500, 1500, 3500]]}
    del saved["args"]["line_fim_rate"]
    assert _resumed_history(saved, TrainArgs(steps=1500)) == {"line_fim_from_step": 1500}


def test_init_from_starts_at_the_exported_weights_with_their_tokenizer(trained_run, tmp_path):
    _, final = trained_run
    exported = export_checkpoint(final, tmp_path / "exported")
    root = final.parent.parent.parent
    args = TrainArgs(**{**_tiny_args(tmp_path / "cont", root / "corpus.jsonl.gz", steps=1).__dict__,
                        "init_from": str(exported), "n_embd": 64, "lr": 0.0, "warmup_steps": 1})
    continued = ckpt.load_checkpoint(run(args, resume=False))
    # A zero learning rate leaves the weights as they were exported; the architecture and the
    # tokenizer are the exported model's, whatever the size flags said.
    before = ckpt.load_checkpoint(final)
    assert continued["config"]["n_embd"] == 32 and continued["tokenizer_json"] == before["tokenizer_json"]
    assert all(torch.equal(before["model"][name], continued["model"][name]) for name in before["model"])
    assert continued["init_from"] == str(exported)
    card = (export_checkpoint(Path(ckpt.latest_checkpoint(tmp_path / "cont")), tmp_path / "card") / "README.md").read_text()
    assert f"continuing from the weights of `{exported}`" in card and "from scratch" not in card
    with pytest.raises(SystemExit, match="not a model directory"):
        run(TrainArgs(**{**args.__dict__, "init_from": str(tmp_path / "missing")}), resume=False)


def test_precision_picks_bf16_autocast_only_where_it_has_kernels():
    from training.train import autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16
    has_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if has_bf16 else None)
    with pytest.raises(SystemExit, match="precision"):
        autocast_dtype("fp8", cpu)


def test_whole_line_middles_never_start_on_a_blank_line():
    from training.samples import split_at_lines

    text = "def f():\n\n    \n    return 1\n\n\nx = f()\n"
    firsts = {split_at_lines(text, random.Random(seed))[1].split("\n")[0] for seed in range(200)}
    assert firsts == {"def f():", "    return 1", "x = f()"}
    assert split_at_lines("\n\n", random.Random(0)) == ("\n", "", "\n")  # nothing written: a blank one


def test_short_fim_windows_pack_several_middles_into_a_row(tokenizer, ids):
    indexed = index_documents(tokenizer, _small_documents())

    def middles_per_row(min_fim_tokens: int) -> float:
        stream = RowStream(tokenizer, indexed, row_tokens=512, seed=5, mix=SampleMix(0.0, 0.5, 0.5),
                           min_fim_tokens=min_fim_tokens)
        rows = [stream.next_row()[0] for _ in range(40)]
        assert all(len(row) == 512 for row in rows)
        return sum(row.count(ids.fim_middle) for row in rows) / len(rows)

    whole, short = middles_per_row(0), middles_per_row(96)
    assert whole < 1.3 and short > 1.7, (whole, short)


def test_the_model_card_renders_a_paired_evaluation():
    from training.export import _evaluation_section

    summary = {"examples": 2851, "exact_match": 0.0196, "loss_nats_per_token": 2.3712, "middle_tokens": 35033}
    better = dict(summary, exact_match=0.0231, loss_nats_per_token=2.2432)
    comparison = {
        "exact_match": {"difference": 0.0035, "interval": [-0.002, 0.009], "only_a": 27, "only_b": 37, "both": 29},
        "loss": {"difference": -0.0655, "interval": [-0.0909, -0.0401]},
    }
    paired = {
        "command": "python benchmarks/eval_infill.py --models tiny,runs/new", "models": ["tiny", "runs/new"], "order": "spm",
        "datasets": {"stdlib": {"summaries": {"tiny": summary, "runs/new": better}, "comparison": comparison}},
    }  # fmt: skip
    section = _evaluation_section(paired)
    row = next(line for line in section.splitlines() if line.startswith("| stdlib"))
    assert row == "| stdlib | 2851 | 0.0196 | 0.0231 | +0.0035 [-0.0020, +0.0090] | 2.371 | 2.243 | -0.066 [-0.091, -0.040] |"
    assert "Paired against `tiny`" in section and "SPM" in section
