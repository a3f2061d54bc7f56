"""The editing-method registry (DESIGN.md house style 3): explicit, duplicate names are errors, typos get
"did you mean". A method is an `EditMethod`: where its v* lives (down-proj output or block output), whether
it edits a batch of cases in one update and several layers, and its `apply` step, which turns optimised
targets into weight updates on a WeightDelta (REFERENCE.md section 3)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from goldenlayers.cases import EditCase
from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.hparams import EditHParams, MethodFamily
from goldenlayers.editing.solve import KeyCov
from goldenlayers.editing.values import Site, ValueTargets
from goldenlayers.models.adapters import ArchAdapter


@dataclass
class EditContext:
    """Everything an `apply` step needs besides the cases: layers ascending; covs {layer: KeyCov};
    templates: the context templates ("{}" first)."""

    model: nn.Module
    tok: object
    adapter: ArchAdapter
    hp: EditHParams
    layers: list[int]
    templates: list[str]
    covs: dict[int, KeyCov]


ApplyFn = Callable[[EditContext, list[EditCase], ValueTargets, WeightDelta], float]


@dataclass(frozen=True)
class EditMethod:
    """name: registry key. family: which preset values it takes. site: where v* is optimised (at the last layer
    of `layers`). batch: edits several cases in one update. multi_layer: accepts a range of layers.
    apply(ctx, cases, targets, delta) -> Frobenius norm of the update it made."""

    name: str
    family: MethodFamily
    site: Site
    batch: bool
    multi_layer: bool
    apply: ApplyFn
    summary: str


_METHODS: dict[str, EditMethod] = {}


def register_method(method: EditMethod) -> EditMethod:
    if method.name in _METHODS:
        raise ValueError(f"an editing method named {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> EditMethod:
    key = name.lower().replace("_", "-")
    if key in _METHODS:
        return _METHODS[key]
    close = difflib.get_close_matches(key, list(_METHODS), n=2, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown editing method {name!r}.{hint} Available: {', '.join(available_methods())}.")
