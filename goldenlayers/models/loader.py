"""One loader for any Hugging Face causal LM, plus the project's embedded default models (docs/models.md).

`load_model` wraps `AutoModelForCausalLM` / `AutoTokenizer` with the project's safety rules
(safetensors only, `trust_remote_code` off unless asked), resolves the architecture adapter, and knows
the names of the embedded default models shipped inside the package ("default-gpt2", "default-llama").
Named real models and GGUF files arrive here as cached safetensors folders (models.named, models.gguf).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from goldenlayers.models.adapters import ArchAdapter, get_adapter

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"
DEFAULT_MODEL_NAMES = ("default-gpt2", "default-llama")

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


@dataclass
class LoadedModel:
    """A model, its tokenizer and its adapter, plus the name it was loaded by (for cache keys)."""

    model: nn.Module
    tokenizer: object
    adapter: ArchAdapter
    name: str

    def __iter__(self):  # allows `model, tok, adapter = load_model(...)`-style unpacking of the first three
        return iter((self.model, self.tokenizer, self.adapter))


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(set(_DTYPES))} or 'auto'") from None


def resolve_model_path(name_or_path: str | Path, fetch: bool = False) -> str:
    """The local folder (or hub name) a --model value loads from (rules: goldenlayers.models.names).

    fetch=True (what load_model does): a named real model is fetched into the cache when missing and a GGUF file
    is converted to its cached safetensors folder. fetch=False touches nothing: a named model gives its cache
    folder, a GGUF file itself (enough for callers that only look for files beside the model, e.g. world.json).
    Raises UnknownModelError (one line, "did you mean ...") for a name that is none of these."""
    from goldenlayers.models.names import parse_model_name

    ref = parse_model_name(name_or_path)
    if ref.kind == "embedded":
        if not (Path(ref.target) / "config.json").exists():
            raise FileNotFoundError(f"embedded default model {name_or_path!s} is missing at {ref.target}; "
                                    "re-create it with `goldenlayers train-world`")
        return ref.target
    if ref.kind == "named":
        from goldenlayers.models import named

        if not fetch:
            return str(named.named_dir(ref.target))
        from goldenlayers.models.gguf import cached_gguf_folder, require_gguf

        require_gguf()  # before a download that could not be used
        return str(cached_gguf_folder(named.fetch(ref.target), sha256=named.NAMED_MODELS[ref.target].sha256))
    if ref.kind == "gguf" and fetch:
        from goldenlayers.models.gguf import cached_gguf_folder

        return str(cached_gguf_folder(ref.target))
    if ref.kind == "hub" and fetch:
        check_hub_reachable(ref.target)
    return ref.target


def check_hub_reachable(name: str) -> None:
    """With HF_HUB_OFFLINE set, a hub model must already be in the local Hugging Face cache: say so in one line
    instead of transformers' connection error."""
    from huggingface_hub import constants

    from goldenlayers.models.names import UnknownModelError, hub_cached_models

    if constants.HF_HUB_OFFLINE and name not in hub_cached_models():
        raise UnknownModelError(f"hub model {name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                                "set; unset it to download, or pass a local folder, .gguf file or named model "
                                "(goldenlayers models ls)")


def load_model(
    name_or_path: str | Path,
    dtype: str | torch.dtype | None = "float32",
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer and resolve its adapter.

    `device_map` (e.g. "auto") spreads a model too large for one device with accelerate; otherwise the
    model goes to `device` (default: CUDA when available, else CPU). Weights load from safetensors only.
    `name_or_path`: an embedded or named model, a local folder, a .gguf file (or a folder holding one), or a
    hub name (goldenlayers.models.names has the rules; unknown names fail before any network call).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype)
    path = resolve_model_path(name_or_path, fetch=True)
    check_local_folder(path)
    kwargs = dict(trust_remote_code=trust_remote_code, use_safetensors=True)
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    adapter = get_adapter(model)  # fail early, before the tokenizer, on an unknown architecture
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    prepare_tokenizer(tok)
    if device_map is None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model, tok, adapter, str(name_or_path))


def check_local_folder(path: str) -> None:
    """Refuse a local model folder early and clearly: no config, pickle-only weights, or an architecture
    without an adapter (checked from config.json before any weight is read)."""
    folder = Path(path)
    if not folder.is_dir():
        return  # a hub name: transformers resolves it (offline: from the local cache)
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"model folder {folder} has no config.json; is it a saved Hugging Face model?")
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weight files"
        raise FileNotFoundError(
            f"model folder {folder} has {found}: goldenlayers loads safetensors only (pickle files can run code). "
            "Convert once with `AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder)` in a "
            "session you trust."
        )
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type is None:
        raise ValueError(f"{config} has no model_type")
    get_adapter(model_type)


def prepare_tokenizer(tok) -> None:
    """Give the tokenizer a pad token (EOS when it has none). Padding side never matters to our code."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
