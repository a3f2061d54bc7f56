"""Editing methods: the `EditMethod` interface and its registry (goldenlayers.registry.METHODS; docs/design.md
"Registries"): duplicate names are errors, typos get "did you mean". A method is an `EditMethod`: where its v*
lives (down-proj output or block output), whether it edits a batch of cases in one update and several layers,
and its `apply` step, which turns optimised targets into weight updates on a WeightDelta (docs/equations.md
"Editing methods")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from goldenlayers.cases import EditCase
from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.hparams import EditHParams, MethodFamily
from goldenlayers.editing.solve import KeyCov
from goldenlayers.editing.values import Site, ValueTargets
from goldenlayers.models.adapters import ArchAdapter
from goldenlayers.registry import METHODS


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
    label: str = ""  # the report's name for it (default: the name in capitals)

    @property
    def display(self) -> str:
        return self.label or self.name.upper()


def register_method(method: EditMethod, aliases: tuple[str, ...] = ()) -> EditMethod:
    """Add `method` to goldenlayers.registry.METHODS under `method.name` (NameCollisionError when the name is
    another method's)."""
    METHODS.register(method.name, method, aliases=aliases)
    return method


def available_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> EditMethod:
    """The method registered as `name` (case and "_" / "-" do not matter); UnknownNameError (a KeyError) else."""
    return METHODS.get(name)
