import math

import pytest
import torch

from model_runtime import CompletionRequest, LoadOptions, ModelLoadError, load_engine, loader


def _load(**options):
    return load_engine(LoadOptions(**options))


def test_missing_directory_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        _load(model=str(tmp_path / "nowhere"), device="cpu")


def test_directory_without_config_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        _load(model=str(tmp_path), device="cpu")


def test_unknown_short_name_lists_the_bundled_models():
    with pytest.raises(ModelLoadError, match="unknown model name 'no-such-model'"):
        _load(model="no-such-model", device="cpu")


def test_offline_hub_gives_one_actionable_line(monkeypatch, tmp_path):
    # The hub library reads HF_HUB_OFFLINE once at import, so set its constant as well.
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as caught:
        _load(model="bigcode/gpt_bigcode-santacoder", device="cpu")
    message = str(caught.value)
    assert "hub" in message and "offline" in message and "\n" not in message


@pytest.mark.parametrize(
    "options, pattern",
    [
        (dict(quantization="int4"), "unknown quantization 'int4'"),
        (dict(device="tpu"), "unknown device 'tpu'"),
        (dict(dtype="fp8"), "unknown dtype 'fp8'"),
        (dict(fim_order="mps"), "unknown FIM order"),
        (dict(fim_tokens=("<PRE>", "<MID>", "<SUF>")), "fim_tokens"),
    ],
)
def test_bad_options_are_clear_errors(tiny_model_dir, options, pattern):
    with pytest.raises(ModelLoadError, match=pattern):
        _load(model=str(tiny_model_dir), **dict(dict(device="cpu"), **options))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_what_to_do(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        _load(model=str(tiny_model_dir), device="cuda")


def test_out_of_memory_while_loading_is_a_clear_error(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    def explode(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", explode)
    with pytest.raises(ModelLoadError, match="not enough memory.*nf4"):
        _load(model=str(tiny_model_dir), device="cpu")


def test_auto_dtype_is_fp32_on_cpu_and_bf16_on_cuda():
    assert loader.choose_dtype("auto", "cpu") == torch.float32
    assert loader.choose_dtype("auto", "cuda") == torch.bfloat16


def test_hub_ids_and_paths_are_told_apart(tmp_path):
    assert loader.resolve_source("bigcode/gpt_bigcode-santacoder").kind == "hub"
    (tmp_path / "config.json").write_text("{}")
    assert loader.resolve_source(str(tmp_path)).kind == "directory"
    with pytest.raises(ModelLoadError):
        loader.resolve_source("./relative/missing")


def test_remote_code_is_off_by_default():
    assert LoadOptions().trust_remote_code is False


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
def test_quantized_models_load_on_cpu_and_give_finite_logits(tiny_model_dir, quantization):
    engine = _load(model=str(tiny_model_dir), device="cpu", quantization=quantization)
    assert engine.info.quantization == quantization
    ids = engine.fim.layout(engine.tokenize("def f(x):\n    return "), engine.tokenize("\n"), "spm")
    from transformers import DynamicCache

    from model_runtime.decode import forward_tokens

    logits = forward_tokens(engine.model, ids, DynamicCache(), 0)
    assert torch.isfinite(logits).all()
    result = engine.complete(CompletionRequest(prefix="def f(x):\n    return ", max_new_tokens=4))
    assert result.stats.generated_tokens >= 1 or result.stop_reason.value == "eos"
    assert not math.isnan(result.stats.decode_ms)


def test_negative_thread_count_is_a_clear_error(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="threads"):
        _load(model=str(tiny_model_dir), device="cpu", threads=-1)


def test_small_models_on_a_cpu_use_one_thread(tiny_model_dir):
    torch.set_num_threads(2)
    _load(model=str(tiny_model_dir), device="cpu")
    assert torch.get_num_threads() == 1
    _load(model=str(tiny_model_dir), device="cpu", threads=2)
    assert torch.get_num_threads() == 2
