"""Model loading and per-architecture adapters.

The names below are imported on first use (PEP 562), so that torch-free parts of this package (model names, the
named real models, the GGUF cache listing) can be used by `goldenlayers ls` without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ArchAdapter": "adapters",
    "UnknownArchitectureError": "adapters",
    "get_adapter": "adapters",
    "register_adapter": "adapters",
    "supported_architectures": "adapters",
    "DEFAULT_MODEL_NAMES": "names",
    "LoadedModel": "loader",
    "load_model": "loader",
    "model_device": "loader",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"goldenlayers.models.{_EXPORTS[name]}"), name)
