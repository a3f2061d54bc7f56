"""Knowledge editing (docs/equations.md "Editing methods"; docs/editing.md): ROME, R-ROME, EMMET, MEMIT and AlphaEdit on the
weights of any adapter's model.

`edit()` applies cases and returns a reversible EditResult; `edit_each()` is the batched one-case-at-a-time
form for layer sweeps; methods are looked up in an explicit registry (`get_method`, `available_methods`).
`resolve_settings` turns (model, method, preset, overrides) into a method's typed settings. Key statistics live
in `goldenlayers.editing.stats` (`resolve_key_stats`). The names are imported on first use, so that the
settings classes (goldenlayers.editing.hparams) can be read without importing torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "CaseDiagnostics": "api", "EditResult": "api", "edit": "api", "edit_each": "api", "edit_grid": "api",
    "refused_cases": "api",
    "EditOrderError": "delta", "WeightDelta": "delta", "active_deltas": "delta",
    "PRESETS": "hparams", "EditHParams": "hparams", "StatsSettings": "hparams", "preset_for_model": "hparams",
    "resolve_settings": "hparams",
    "EditMethod": "registry", "available_methods": "registry", "get_method": "registry",
    "register_method": "registry",
    "KeyCov": "solve", "StatsError": "solve",
    "context_templates": "templates",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'goldenlayers.editing' has no attribute {name!r}")
    if _WHERE[name] in ("registry",):  # the methods register themselves when the api module is imported
        importlib.import_module("goldenlayers.editing.api")
    return getattr(importlib.import_module(f"goldenlayers.editing.{_WHERE[name]}"), name)
