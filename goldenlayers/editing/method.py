"""What an editing method is (docs/editing.md "Adding a method"): `EditMethod` says where its v* is optimised,
which weights it changes, which settings class it takes and whether it keeps state between sequential edits;
`EditContext` is everything its `apply` step gets besides the cases.

A method's `apply(ctx, cases, targets, delta)` turns optimised targets into weight updates on a `WeightDelta`,
each keyed by (layer, site) with a site the model's adapter declares ("mlp_out": the MLP's down-projection,
"attn_out": the attention output projection), and returns the Frobenius norm of what it changed. A method
with `new_state` keeps what it must remember across sequential edits (AlphaEdit: the keys it edited before)
in `ctx.state`; `edit()` makes one per call, or continues the one of an earlier result (`EditResult.state`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from goldenlayers.cases import EditCase
from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.hparams import EditHParams, MethodFamily
from goldenlayers.editing.solve import KeyCov
from goldenlayers.editing.values import Site, ValueTargets
from goldenlayers.models.adapters import MLP_OUT, ArchAdapter


@dataclass
class EditContext:
    """Everything an `apply` step needs besides the cases: layers ascending; covs {layer: KeyCov} (C of the
    edited site's keys, the matrix kept in `KeyCov.matrix`); templates: the context templates ("{}" first);
    state: the method's sequential state (None for methods without one)."""

    model: nn.Module
    tok: object
    adapter: ArchAdapter
    hp: EditHParams
    layers: list[int]
    templates: list[str]
    covs: dict[int, KeyCov]
    state: object | None = None


ApplyFn = Callable[[EditContext, list[EditCase], ValueTargets, WeightDelta], float]


@dataclass(frozen=True)
class EditMethod:
    """name: registry key. family: which preset entry its values come from (values the settings class has no
    field for are left out). settings: its settings class. site: where v* is optimised (at the last layer of
    `layers`). weight_site: the weights it changes (an adapter site). batch: edits several cases in one update.
    multi_layer: accepts a range of layers. needs_stats: refuses C = I (its update is built from C itself, which
    its context then holds as `KeyCov.matrix`).
    new_state: () -> a fresh sequential state with a `copy()` method, or None for a stateless method.
    apply(ctx, cases, targets, delta) -> Frobenius norm of the update it made."""

    name: str
    family: MethodFamily
    site: Site
    batch: bool
    multi_layer: bool
    apply: ApplyFn
    summary: str
    settings: type[EditHParams] = EditHParams
    weight_site: str = MLP_OUT
    needs_stats: bool = False
    new_state: Callable[[], object] | None = field(default=None)
    label: str = ""  # the report's name for it (default: the name in capitals)

    @property
    def display(self) -> str:
        return self.label or self.name.upper()
