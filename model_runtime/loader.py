"""Find and load a causal LM and its tokenizer: bundled name, local directory or hub id.

Every failure a user can cause becomes a one-line ``ModelLoadError`` that says what to do.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .api import DEVICES, DTYPES, QUANTIZATIONS, LoadOptions, ModelLoadError, ProgressCallback

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "bundled"
DEFAULT_HUB_MODEL = "bigcode/gpt_bigcode-santacoder"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "bundled" | "directory" | "hub"
    location: str  # a directory path or a hub id


def bundled_names() -> list[str]:
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file())


def resolve_source(model: str) -> ModelSource:
    name = model.strip()
    if not name:
        raise ModelLoadError("no model given: set the model to 'tiny', a local directory or a hub id")
    if "/" not in name and "\\" not in name and not name.startswith((".", "~")):
        bundled = BUNDLED_DIR / name
        if (bundled / "config.json").is_file():
            return ModelSource("bundled", str(bundled))
        if not Path(name).exists():
            known = ", ".join(bundled_names()) or "none installed"
            raise ModelLoadError(
                f"unknown model name {name!r}: bundled models are {known}; otherwise give a directory or a hub id "
                f"such as {DEFAULT_HUB_MODEL}"
            )
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(f"{str(path)!r} is not a model directory (no config.json in it): point the model setting at the folder holding config.json")
        return ModelSource("directory", str(path))
    if _HUB_ID.match(name) and not name.startswith("."):
        return ModelSource("hub", name)
    raise ModelLoadError(f"model directory {str(path)!r} does not exist: fix the path, or use 'tiny' or a hub id such as {DEFAULT_HUB_MODEL}")


def choose_device(requested: str) -> str:
    if requested not in DEVICES:
        raise ModelLoadError(f"unknown device {requested!r}: choose one of {', '.join(DEVICES)}")
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but PyTorch sees no CUDA GPU (CPU-only torch build?): set device to 'auto' or 'cpu'")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' was asked for but is not available here: set device to 'auto' or 'cpu'")
    return requested


def choose_dtype(requested: str, device: str) -> torch.dtype:
    if requested not in DTYPES:
        raise ModelLoadError(f"unknown dtype {requested!r}: choose one of {', '.join(DTYPES)}")
    if requested == "auto":
        # fp16 sampling is known to produce NaNs for this family: bf16 on GPUs, fp32 on CPUs.
        return torch.bfloat16 if device == "cuda" else torch.float32
    if requested == "fp16":
        log.warning("fp16 is known to produce NaNs with GPTBigCode models; prefer bf16")
    return _DTYPES[requested]


def _quantization_config(quantization: str, dtype: torch.dtype):
    if quantization not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    if quantization == "none":
        return None
    try:
        from transformers import BitsAndBytesConfig
        import bitsandbytes  # noqa: F401  (fail here, with a clear message, not deep inside loading)
    except ImportError as error:
        raise ModelLoadError(f"quantization {quantization!r} needs bitsandbytes: pip install 'bitsandbytes>=0.50' ({error})") from error
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _hub_message(source: ModelSource, error: BaseException) -> str:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"could not get {source.location!r} from the Hugging Face hub ({reason[:160]}). If this machine is offline, "
        f"download the model elsewhere (hf download {source.location}) and set the model to that directory, or use 'tiny'"
    )


def _remote_code_message(model: str, what: str) -> str:
    return (
        f"{model!r} needs {what} to load, which was not run: only if you trust that code, "
        f"turn on trust_remote_code (the trustRemoteCode setting, --trust-remote-code)"
    )


def _refuse_custom_code(source: ModelSource, model: str) -> None:
    """A local model whose config.json names its own Python code (``auto_map``) for a model
    type transformers does not know is refused here, before transformers sees it: it would
    refuse too, but with a message about the hub, or a tokenizer error first. For a known
    type transformers ignores ``auto_map`` without trust_remote_code and uses its own code."""
    if source.kind == "hub":
        return  # transformers refuses after the download; its error is turned into the same message
    try:
        config = json.loads((Path(source.location) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # transformers reports what is wrong with it
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if not isinstance(auto_map, dict) or not auto_map:
        return
    from transformers import CONFIG_MAPPING

    if config.get("model_type") in CONFIG_MAPPING:
        log.info("ignoring the custom code that config.json names (auto_map): trust_remote_code is off, and transformers has its own %r", config["model_type"])
        return
    references = [item for value in auto_map.values() for item in (value if isinstance(value, list) else [value]) if isinstance(item, str)]
    files = sorted({reference.split("--")[-1].rsplit(".", 1)[0] + ".py" for reference in references})
    raise ModelLoadError(_remote_code_message(model, f"Python code from its directory ({', '.join(files)}, named by auto_map in config.json)"))


def load_model(options: LoadOptions, progress: ProgressCallback | None = None):
    """Load (model, tokenizer, device, dtype). Raises ModelLoadError for anything a user can fix."""
    report = progress or (lambda stage, fraction: None)
    report("resolving model", 0.0)
    source = resolve_source(options.model)
    device = choose_device(options.device)
    dtype = choose_dtype(options.dtype, device)
    quantization = _quantization_config(options.quantization, dtype)
    trust_remote_code = options.trust_remote_code is True  # never None: transformers would ask on stdin
    if not trust_remote_code:
        _refuse_custom_code(source, options.model)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = {"trust_remote_code": trust_remote_code}
    if source.kind != "hub":
        common["local_files_only"] = True
    try:
        report("loading tokenizer", 0.1)
        tokenizer = AutoTokenizer.from_pretrained(source.location, **common)
        report("loading weights", 0.2)
        kwargs = dict(common, dtype=dtype)
        if quantization is not None:
            kwargs.update(quantization_config=quantization, device_map={"": device})
        model = AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
        if quantization is None:
            report("moving to device", 0.8)
            model = model.to(device)
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - every loading failure becomes one actionable line
        if _is_out_of_memory(error):
            raise ModelLoadError(
                f"not enough memory to load {options.model!r} on {device}: try quantization 'nf4' or 'int8', "
                f"device 'cpu', or a smaller model"
            ) from error
        if source.kind == "hub" and isinstance(error, (OSError, ConnectionError)):
            raise ModelLoadError(_hub_message(source, error)) from error
        if "trust_remote_code" in str(error):
            raise ModelLoadError(_remote_code_message(options.model, "its own Python code")) from error
        raise ModelLoadError(f"could not load {options.model!r}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error
    model.eval()
    return model, tokenizer, device, dtype, source


def load_tokenizer(options: LoadOptions):
    """Load only the tokenizer of ``options.model`` (bundled name, directory or hub id), as
    ``load_model`` does: a remote engine builds the same token ids as the in-process one."""
    source = resolve_source(options.model)
    trust_remote_code = options.trust_remote_code is True
    if not trust_remote_code:
        _refuse_custom_code(source, options.model)
    from transformers import AutoTokenizer

    common = {"trust_remote_code": trust_remote_code}
    if source.kind != "hub":
        common["local_files_only"] = True
    try:
        return AutoTokenizer.from_pretrained(source.location, **common), source
    except Exception as error:  # noqa: BLE001 - every loading failure becomes one actionable line
        if source.kind == "hub" and isinstance(error, (OSError, ConnectionError)):
            raise ModelLoadError(_hub_message(source, error)) from error
        if "trust_remote_code" in str(error):
            raise ModelLoadError(_remote_code_message(options.model, "its own Python code")) from error
        raise ModelLoadError(f"could not load the tokenizer of {options.model!r}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error


def read_context_tokens(source: ModelSource, trust_remote_code: bool = False) -> int | None:
    """The model's position limit from its config (``None`` when it cannot be read)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source.location, local_files_only=source.kind != "hub", trust_remote_code=trust_remote_code is True)
    except Exception:  # noqa: BLE001 - the server's limit is used instead
        return None
    value = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(value) if isinstance(value, int) and value > 0 else None
