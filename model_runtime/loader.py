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
        import bitsandbytes  # noqa: F401  (fail here, with a clear message, not deep inside loading)
        from transformers import BitsAndBytesConfig
    except ImportError as error:
        raise ModelLoadError(f"quantization {quantization!r} needs bitsandbytes: pip install 'bitsandbytes>=0.50' ({error})") from error
    if quantization == "int8":
        _quiet_bitsandbytes_casts()
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


_BNB_CAST_WARNING = "MatMul8bitLt: inputs will be cast"


class _DropCastWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_BNB_CAST_WARNING)


def _quiet_bitsandbytes_casts() -> None:
    """bitsandbytes logs "MatMul8bitLt: inputs will be cast from torch.float32 to float16" on
    every int8 matmul whose input is not fp16: about 160 lines per completion on CPU (80 for
    eight tokens of a two-layer model, measured). Said once here instead; idempotent."""
    bnb_log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastWarning) for f in bnb_log.filters):
        bnb_log.addFilter(_DropCastWarning())
        log.info("int8: bitsandbytes casts each int8 matmul's input to float16; its per-call warning about that is silenced")


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _hub_message(source: ModelSource, error: BaseException) -> str:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"could not get {source.location!r} from the Hugging Face hub ({reason[:160]}). If this machine is offline, "
        f"download the model elsewhere (hf download {source.location}) and set the model to that directory, or use 'tiny'"
    )


HUB_PROBE_TIMEOUT_S = 3.0


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _probe_hub(repo_id: str) -> str | None:
    """``None`` if the hub answers (whatever it says about ``repo_id``), else why it cannot be
    reached. One request with a short timeout: transformers' own first request retries with
    backoff for over a minute (85 s measured with the hub's port closed) before it gives up."""
    from huggingface_hub import HfApi, constants

    try:
        HfApi(endpoint=constants.ENDPOINT).model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - only a failure to connect counts; see below
        if _is_connection_error(error):
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return f"{constants.ENDPOINT} cannot be reached ({reason[:120]})"
    return None  # reachable (a 401/404 is the loader's to report, with its own message)


def _is_connection_error(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        name = type(seen).__name__
        if isinstance(seen, (ConnectionError, TimeoutError)) or name in ("ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "OfflineModeIsEnabled", "ProxyError"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _hub_locality(source: ModelSource) -> bool:
    """``local_files_only`` for a hub id: ``True`` (the cache only) when the hub is offline
    (HF_HUB_OFFLINE) or unreachable, and fails at once when the cache lacks the model."""
    if _hub_offline():
        return True
    problem = _probe_hub(source.location)
    if problem is None:
        return False
    log.warning("the Hugging Face hub: %s; trying the local cache", problem)
    return True


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


# Families whose fill-in-the-middle tokens the runtime knows (model_runtime.fim); GPTBigCode is
# the one it is built and tested for. Other causal LMs with such tokens load too.
SUPPORTED_FAMILIES = ("gpt_bigcode (SantaCoder, StarCoder)", "starcoder2 (StarCoder2)", "qwen2 (Qwen2.5-Coder)")


def _supported_text() -> str:
    return f"use a model of a supported family: {', '.join(SUPPORTED_FAMILIES)}, or another causal LM whose tokenizer has FIM tokens"


def _refuse_unsupported_architecture(source: ModelSource, model: str, trust_remote_code: bool) -> None:
    """A local model that transformers cannot load as a causal LM is refused here with the
    families supported: transformers fails later, often in the tokenizer, with a message that
    ended mid-sentence once cut to one line ("...the backend tokenizer from one of: ")."""
    if source.kind == "hub":
        return
    try:
        config = json.loads((Path(source.location) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{model!r}: its config.json cannot be read ({_one_line(error)}): fix or replace that file") from error
    if not isinstance(config, dict):
        raise ModelLoadError(f"{model!r}: its config.json is not a JSON object: fix or replace that file")
    if trust_remote_code and config.get("auto_map"):
        return  # the model's own code decides
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ModelLoadError(f"{model!r}: its config.json names no model_type, so its architecture is unknown: {_supported_text()}")
    if model_type not in CONFIG_MAPPING:
        raise ModelLoadError(f"{model!r} is a {model_type!r} model, an architecture this transformers does not know: {_supported_text()}")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(f"{model!r} is a {model_type!r} model, which is no causal language model and cannot complete code: {_supported_text()}")


def _one_line(error: BaseException, limit_chars: int = 300) -> str:
    """An exception's whole message on one line (its first line alone may end mid-sentence)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit_chars else text[: limit_chars - 3] + "..."


def load_model(options: LoadOptions, progress: ProgressCallback | None = None):
    """Load (model, tokenizer, device, dtype, source): ``source`` is where the model was found
    (``ModelSource``). Raises ModelLoadError for anything a user can fix."""
    report = progress or (lambda stage, fraction: None)
    report("resolving model", 0.0)
    source = resolve_source(options.model)
    device = choose_device(options.device)
    dtype = choose_dtype(options.dtype, device)
    quantization = _quantization_config(options.quantization, dtype)
    trust_remote_code = options.trust_remote_code is True  # never None: transformers would ask on stdin
    if not trust_remote_code:
        _refuse_custom_code(source, options.model)
    _refuse_unsupported_architecture(source, options.model, trust_remote_code)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = {"trust_remote_code": trust_remote_code}
    if source.kind != "hub" or _hub_locality(source):
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
    except Exception as error:  # every loading failure becomes one actionable line
        if _is_out_of_memory(error):
            raise ModelLoadError(
                f"not enough memory to load {options.model!r} on {device}: try quantization 'nf4' or 'int8', "
                f"device 'cpu', or a smaller model"
            ) from error
        if source.kind == "hub" and isinstance(error, (OSError, ConnectionError)):
            raise ModelLoadError(_hub_message(source, error)) from error
        if "trust_remote_code" in str(error):
            raise ModelLoadError(_remote_code_message(options.model, "its own Python code")) from error
        raise ModelLoadError(f"could not load {options.model!r}: {type(error).__name__}: {_one_line(error)}") from error
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
    except Exception as error:  # every loading failure becomes one actionable line
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
