"""Model loading as a new user meets it: no network, an architecture the runtime cannot use,
int8 on CPU. Nothing here touches the network: the hub is a closed port on this machine."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from model_runtime import CompletionRequest, LoadOptions, ModelLoadError, load_engine, loader
from tests.reliability.rawclient import free_port

HUB_ID = "bigcode/gpt_bigcode-santacoder"


@pytest.fixture()
def empty_hub_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return huggingface_hub.constants


def test_an_unreachable_hub_fails_within_seconds_with_one_line(empty_hub_cache, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: every connection is refused
    monkeypatch.setenv("HF_ENDPOINT", closed)
    monkeypatch.setattr(empty_hub_cache, "ENDPOINT", closed)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as caught:
        load_engine(LoadOptions(model=HUB_ID, device="cpu"))
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"{elapsed:.1f} s (before: 85 s of retries)"
    message = str(caught.value)
    assert "\n" not in message and "Hugging Face hub" in message and "offline" in message


def test_hf_hub_offline_fails_at_once_without_asking_the_hub(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(empty_hub_cache, "HF_HUB_OFFLINE", True)

    def no_probe(repo_id: str):
        raise AssertionError("the hub was asked although HF_HUB_OFFLINE is set")

    monkeypatch.setattr(loader, "_probe_hub", no_probe)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="Hugging Face hub"):
        load_engine(LoadOptions(model=HUB_ID, device="cpu"))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "config, said",
    [
        ('{"model_type": "zorblax"}', "'zorblax' model, an architecture this transformers does not know"),
        ('{"model_type": "vit", "hidden_size": 8}', "'vit' model, which is no causal language model"),
        ('{"architectures": ["Mystery"]}', "names no model_type"),
    ],
    ids=["unknown", "not-causal", "no-model-type"],
)
def test_an_unsupported_architecture_says_which_families_are_supported(tmp_path, config, said):
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ModelLoadError) as caught:
        load_engine(LoadOptions(model=str(tmp_path), device="cpu"))
    message = str(caught.value)
    assert said in message and "\n" not in message
    assert message.endswith("gpt_bigcode (SantaCoder, StarCoder), starcoder2 (StarCoder2), qwen2 (Qwen2.5-Coder), or another causal LM whose tokenizer has FIM tokens")


def test_int8_on_cpu_completes_without_a_warning_per_matmul_and_says_its_quantization(tiny_model_dir, caplog, capfd):
    pytest.importorskip("bitsandbytes")
    from lsp_server.engine_host import EngineHost

    caplog.set_level(logging.INFO)
    host = EngineHost()
    assert asyncio.run(host.load(LoadOptions(model=str(tiny_model_dir), device="cpu", quantization="int8"))) is None
    try:
        result = host.engine.complete(CompletionRequest(prefix="def f(x):\n    ", suffix="\n", max_new_tokens=8))
        assert result.stats.generated_tokens > 0
        assert host.describe()["quantization"] == "int8"
    finally:
        host.close()
    casts = [r for r in caplog.records if "MatMul8bitLt" in r.getMessage()]
    assert casts == []
    assert "MatMul8bitLt" not in capfd.readouterr().err
    assert sum("per-call warning about that is silenced" in r.getMessage() for r in caplog.records) == 1
