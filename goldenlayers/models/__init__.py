"""Model loading and per-architecture adapters."""

from goldenlayers.models.adapters import (
    ArchAdapter,
    UnknownArchitectureError,
    get_adapter,
    register_adapter,
    supported_architectures,
)
from goldenlayers.models.loader import DEFAULT_MODEL_NAMES, LoadedModel, load_model, model_device

__all__ = [
    "ArchAdapter",
    "UnknownArchitectureError",
    "get_adapter",
    "register_adapter",
    "supported_architectures",
    "DEFAULT_MODEL_NAMES",
    "LoadedModel",
    "load_model",
    "model_device",
]
