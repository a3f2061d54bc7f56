"""GGUF models (llama.cpp's quantised format): dequantised once with transformers' GGUF support, then kept as a
plain safetensors folder in the cache so that every later load is an ordinary one (docs/models.md).

The copy lives in <cache root>/models/gguf/<sha256 of the GGUF file>-c<CONVERSION_VERSION>/ (config.json,
tokenizer files, model.safetensors in float32, source.json saying where it came from and what was corrected).
Before it is written, the conversion is checked against the file and known deviations of transformers versions
are corrected (goldenlayers.models.gguf_checks); CONVERSION_VERSION in the folder name keeps a copy made before
a check existed from being reused. Float32 holds the dequantised values
exactly, so a load at any dtype casts from it and equals a direct GGUF load at that dtype. The folder is written
under a temporary name and renamed into place, so an interrupted conversion never leaves a half copy.
Needs the optional packages `gguf` and `accelerate` (the `gguf` extra).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from goldenlayers.cache import cache_root
from goldenlayers.models.gguf_checks import CONVERSION_VERSION

GGUF_EXTRA = "pip install 'goldenlayers[gguf]'"
_NEEDED = ("gguf", "accelerate")


class MissingExtraError(ImportError):
    """An optional dependency of a feature is not installed; the message names the extra to install."""


def require_gguf() -> None:
    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"loading GGUF models needs {' and '.join(missing)}: {GGUF_EXTRA}")


def find_gguf(path: str | Path) -> Path | None:
    """The GGUF file `path` names: the file itself, or the one .gguf file in a folder that is not already a
    Hugging Face model folder (no config.json); None when `path` is neither. Several .gguf files in one folder
    are an error naming them (pass the file)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p if p.suffix.lower() == ".gguf" else None
    if not p.is_dir() or (p / "config.json").is_file():
        return None
    found = sorted(p.glob("*.gguf"))
    if len(found) > 1:
        raise ValueError(f"{p} holds several GGUF files ({', '.join(f.name for f in found)}); pass one of them")
    return found[0] if found else None


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gguf_cache_dir(sha256: str, root: str | Path | None = None) -> Path:
    return cache_root(root) / "models" / "gguf" / f"{sha256}-c{CONVERSION_VERSION}"


def cached_gguf_folder(path: str | Path, sha256: str | None = None, root: str | Path | None = None,
                       progress: bool = True) -> Path:
    """The safetensors folder of the GGUF file `path`, converting it on the first call (keyed by the file's
    sha256; pass `sha256` when it is already known, e.g. checked at download)."""
    path = Path(path).expanduser()
    sha256 = sha256 or file_sha256(path)
    out = gguf_cache_dir(sha256, root)
    if (out / "source.json").is_file():
        return out
    require_gguf()
    convert_gguf(path, out, sha256=sha256, progress=progress)
    return out


def convert_gguf(path: Path, out: Path, sha256: str, progress: bool = True) -> None:
    """Dequantise `path` to float32 with transformers and write config, tokenizer and model.safetensors to `out`
    atomically (temporary folder beside it, then a rename). The GGUF-loaded model cannot `save_pretrained`
    (transformers refuses to serialise a model it marks as GGUF-quantised), so the quantisation config is
    dropped and the weights saved with safetensors directly (tied weights stored once, re-tied on load).
    Weights and tokenizer are checked against the file first (gguf_checks.check_conversion): a known deviation
    is corrected and listed in source.json under "corrected", any other raises GGUFConversionError."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from goldenlayers.models.adapters import get_adapter
    from goldenlayers.models.gguf_checks import check_conversion

    start = time.perf_counter()
    if progress:
        from rich.console import Console

        Console(stderr=True).print(f"converting {path.name} (GGUF) to safetensors in {out} (once per file) ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        get_adapter(model)  # an architecture without an adapter is refused before anything is written
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        tmp.mkdir(parents=True)
        config.save_pretrained(tmp)
        corrected = check_conversion(path, model, tok, tmp, _version("transformers"))  # saves the tokenizer
        if progress and corrected:
            Console(stderr=True).print(f"corrected {len(corrected)} deviation(s) of transformers "
                                       f"{_version('transformers')}'s conversion: " + "; ".join(corrected),
                                       markup=False)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        source = {"gguf": path.name, "sha256": sha256, "bytes": path.stat().st_size, "dtype": "float32",
                  "seconds": round(time.perf_counter() - start, 2), "transformers": _version("transformers"),
                  "conversion": CONVERSION_VERSION, "corrected": corrected}
        (tmp / "source.json").write_text(json.dumps(source, indent=1) + "\n")
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "source.json").is_file():  # not a concurrent conversion that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def cached_conversions(root: str | Path | None = None) -> list[dict]:
    """The converted GGUF models in the cache: their source.json (gguf, sha256, ...) plus folder, model_type
    and bytes on disk, newest first."""
    out = []
    base = cache_root(root) / "models" / "gguf"
    for source in base.glob("*/source.json") if base.is_dir() else ():
        folder = source.parent
        info = json.loads(source.read_text())
        config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        info.update(folder=str(folder), model_type=config.get("model_type", "?"),
                    disk=sum(p.stat().st_size for p in folder.iterdir() if p.is_file()),
                    mtime=source.stat().st_mtime)
        out.append(info)
    return sorted(out, key=lambda i: -i["mtime"])
