"""Knowledge editing (REFERENCE.md section 3): ROME, R-ROME, EMMET and MEMIT on the down-proj of any adapter's model.

`edit()` applies cases and returns a reversible EditResult; `edit_each()` is the batched one-case-at-a-time
form for layer sweeps; methods are looked up in an explicit registry (`get_method`, `available_methods`).
Key statistics live in `goldenlayers.editing.stats` (imported on demand).
"""

from goldenlayers.editing.api import CaseDiagnostics, EditResult, edit, edit_each
from goldenlayers.editing.delta import EditOrderError, WeightDelta, active_deltas
from goldenlayers.editing.hparams import PRESETS, EditHParams, preset_for_model, resolve_hparams
from goldenlayers.editing.registry import EditMethod, available_methods, get_method, register_method
from goldenlayers.editing.solve import KeyCov, StatsError
from goldenlayers.editing.templates import context_templates

__all__ = [
    "PRESETS",
    "CaseDiagnostics",
    "EditHParams",
    "EditMethod",
    "EditOrderError",
    "EditResult",
    "KeyCov",
    "StatsError",
    "WeightDelta",
    "active_deltas",
    "available_methods",
    "context_templates",
    "edit",
    "edit_each",
    "get_method",
    "preset_for_model",
    "register_method",
    "resolve_hparams",
]
