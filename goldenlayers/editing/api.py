"""`edit()` and `edit_each()`: the one entry point to the editing methods (docs/equations.md "Editing methods"; docs/editing.md).

`edit` applies the cases to the model and returns an EditResult holding a reversible WeightDelta;
`edit_each` is the brute-force form: it optimises the v* of many cases together (from the same, unedited
model) and then yields one applied edit per case, each to be restored before the next; `edit_grid` does the
same for every case at each of several layers, all (case, layer) pairs optimised in one batch. Everything that can be
wrong with the input (cases, layers, statistics, prompt length) is checked before any weight changes, and a
failure half-way through undoes what was applied, so a bad input leaves the model bitwise unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import torch
from pydantic import ValidationError
from torch import nn

from goldenlayers.cases import CaseError, EditCase, case_error_from
from goldenlayers.editing.alphaedit import ALPHAEDIT
from goldenlayers.editing.batch import build_rows
from goldenlayers.editing.delta import EditOrderError, WeightDelta
from goldenlayers.editing.emmet import EMMET
from goldenlayers.editing.hparams import EditHParams, resolve_settings
from goldenlayers.editing.memit import MEMIT
from goldenlayers.editing.r_rome import R_ROME
from goldenlayers.editing.registry import EditContext, EditMethod, get_method, register_method
from goldenlayers.editing.rome import ROME
from goldenlayers.editing.solve import KeyCov
from goldenlayers.editing.templates import context_templates
from goldenlayers.editing.values import ValueTargets, optimise_values, optimise_values_layers
from goldenlayers.models.adapters import ArchAdapter, get_adapter
from goldenlayers.models.loader import model_device
from goldenlayers.text import model_max_length

for _m in (ROME, R_ROME, EMMET, MEMIT, ALPHAEDIT):
    register_method(_m)


@dataclass
class CaseDiagnostics:
    """One case's v* optimisation and update. v_init, v_star: (d_model,) float32 on CPU at the method's site;
    update_norm: Frobenius norm of the update that applied the case (shared by all cases of one batch update)."""

    case_id: str
    losses: list[float]
    steps: int
    v_init: torch.Tensor
    v_star: torch.Tensor
    update_norm: float

    @property
    def v_init_norm(self) -> float:
        return float(self.v_init.norm())

    @property
    def v_star_norm(self) -> float:
        return float(self.v_star.norm())

    @property
    def delta_norm(self) -> float:
        """||v* - v_init||."""
        return float((self.v_star - self.v_init).norm())


@dataclass
class EditResult:
    """An applied edit: `delta` undoes it (`restore()`); seconds: {"values": v* optimisation, "solve": updates}."""

    method: str
    layers: list[int]
    delta: WeightDelta
    diagnostics: list[CaseDiagnostics]
    hparams: EditHParams
    covariance: str
    seconds: dict[str, float]
    state: object | None = None  # the method's sequential state after this edit (pass it to the next edit())

    def restore(self) -> None:
        self.delta.restore()

    @property
    def restored(self) -> bool:
        return self.delta.restored


def _as_cases(cases) -> list[EditCase]:
    items = [cases] if isinstance(cases, (EditCase, dict)) else list(cases)
    if not items:
        raise ValueError("no edit cases given")
    return [c if isinstance(c, EditCase) else _case_from_dict(c) for c in items]


def _case_from_dict(d: dict) -> EditCase:
    """EditCase(**d), with pydantic's wrapped errors turned back into the CaseError naming case and field."""
    try:
        return EditCase(**d)
    except ValidationError as e:
        raise case_error_from(e, d.get("case_id")) from None


def _layers(model, adapter: ArchAdapter, method: EditMethod, hp: EditHParams, layer, layers) -> list[int]:
    if layer is not None and layers is not None:
        raise ValueError("pass either layer= or layers=, not both")
    chosen = [layer] if layer is not None else list(layers) if layers is not None else hp.layers
    if not chosen:
        raise ValueError(f"no layer given and the settings have no default: pass layer= (method {method.name!r})")
    if not method.multi_layer and len(chosen) != 1:
        raise ValueError(f"{method.name} edits exactly one layer, got {chosen}")
    for lay in chosen:
        adapter.check_layer(model, lay)
    if sorted(set(chosen)) != chosen:
        raise ValueError(f"layers must be ascending without repeats, got {chosen}")
    return chosen


def _covariances(model, adapter: ArchAdapter, layers: list[int], hp: EditHParams, stats, keep: bool = False
                 ) -> dict[int, KeyCov]:
    d_ff = adapter.d_ff(model)
    if stats is None:
        if hp.mom2_adjustment:
            raise ValueError(
                "these settings use key statistics C (mom2_adjustment=True): pass stats={layer: C} (e.g. "
                "goldenlayers.editing.stats.resolve_key_stats(model, tok, adapter, settings, StatsSettings(...), "
                "layers), cached on disk; the commands collect them themselves), or set mom2_adjustment=False for "
                "C = I"
            )
        return {lay: KeyCov.identity(d_ff) for lay in layers}
    missing = [lay for lay in layers if lay not in stats]
    if missing:
        raise KeyError(f"stats have no key statistics for layer(s) {missing}; they cover {sorted(stats)}")
    return {lay: KeyCov.from_matrix(stats[lay], lay, d_ff, adapter.weight(model, lay).device,
                                    shrinkage=hp.mom2_shrinkage, keep=keep) for lay in layers}


def _sync(model: nn.Module) -> float:
    dev = model_device(model)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()


def _prepare(model, tok, cases, method, layer, layers, hparams, stats, adapter, name, state=None):
    adapter = adapter or get_adapter(model)
    m = get_method(method)
    cases = _as_cases(cases)
    hp = resolve_settings(model, m.name, None, hparams, name=name)
    if m.weight_site not in adapter.sites:
        raise ValueError(f"{m.name} edits the {m.weight_site!r} weights, which the {adapter.model_type} adapter does "
                         f"not declare (it has {', '.join(adapter.sites)})")
    if m.needs_stats and not hp.mom2_adjustment:
        raise ValueError(f"{m.name} needs key statistics C (its update is built from them): set mom2_adjustment=True")
    chosen = _layers(model, adapter, m, hp, layer, layers)
    covs = _covariances(model, adapter, chosen, hp, stats, keep=m.needs_stats)  # C itself for methods built on it
    if state is not None and m.new_state is None:
        raise ValueError(f"{m.name} keeps no state between edits; state= is for sequential methods")
    state = (state.copy() if state is not None else m.new_state()) if m.new_state is not None else None
    templates = context_templates(model, tok, hp.context_templates, hp.template_seed, hp.template_top_k)
    build_rows(tok, cases, templates, with_target=True, kl_prompt=hp.kl_prompt, max_length=model_max_length(model),
               preserve_prompts=hp.preserve_prompts)
    return m, cases, EditContext(model, tok, adapter, hp, chosen, templates, covs, state)


def refused_cases(model: nn.Module, tok, cases, method: str = "r-rome", hparams: EditHParams | dict | None = None,
                  name: str | None = None) -> dict[str, Exception]:
    """{case_id: error} of the cases whose data the method's rows cannot be built from (CaseError: a subject not
    in the prompt, a prompt too long for the model, an empty target), checked case by case without editing, so a
    batch can leave them out and let each fail alone."""
    hp = resolve_settings(model, get_method(method).name, None, hparams, name=name)
    templates = context_templates(model, tok, hp.context_templates, hp.template_seed, hp.template_top_k)
    refused: dict[str, Exception] = {}
    for case in _as_cases(cases):
        try:
            build_rows(tok, [case], templates, with_target=True, kl_prompt=hp.kl_prompt,
                       max_length=model_max_length(model), preserve_prompts=hp.preserve_prompts)
        except CaseError as e:
            refused[case.case_id] = e
    return refused


def _diag(cases: list[EditCase], t: ValueTargets, update_norm: float) -> list[CaseDiagnostics]:
    return [CaseDiagnostics(c.case_id, t.losses[i], t.steps[i], t.v_init[i].cpu(), t.v_star[i].cpu(), update_norm)
            for i, c in enumerate(cases)]


def edit(model: nn.Module, tok, cases, method: str = "r-rome", layer: int | None = None,
         layers: list[int] | None = None, hparams: EditHParams | dict | None = None,
         stats: Mapping[int, torch.Tensor] | None = None, adapter: ArchAdapter | None = None,
         sequential: bool = False, name: str | None = None, state: object | None = None) -> EditResult:
    """Edit `cases` (EditCase, dict, or a list of them) into `model` with `method` at `layer` / `layers`.

    hparams: the method's typed settings (`resolve_settings`), or a dict overriding the model's preset (chosen
    by `preset_choice` from the model and `name`). stats: {layer: C (d_ff, d_ff)}; without them C = I.
    sequential: apply the cases one after another, each on the model edited by the previous ones (required for
    ROME/R-ROME with several cases); otherwise MEMIT/EMMET/AlphaEdit edit all cases in one batch update.
    state: for a method with sequential state (AlphaEdit), the `EditResult.state` of the edit before this one
    (a copy is continued; None starts afresh).
    """
    m, cases, ctx = _prepare(model, tok, cases, method, layer, layers, hparams, stats, adapter, name, state)
    if not m.batch and len(cases) > 1 and not sequential:
        raise ValueError(f"{m.name} edits one fact per update: pass sequential=True to apply {len(cases)} cases in "
                         "turn, or use edit_each() to edit them one at a time from the same model")
    groups = [[c] for c in cases] if sequential else [cases]
    delta = WeightDelta(model, ctx.adapter, label=f"{m.name}@{ctx.layers}")
    diagnostics, seconds = [], {"values": 0.0, "solve": 0.0}
    try:
        for group in groups:
            t0 = _sync(model)
            targets = optimise_values(model, tok, ctx.adapter, group, ctx.templates, ctx.hp, m.site, ctx.layers[-1])
            t1 = _sync(model)
            norm = m.apply(ctx, group, targets, delta)
            t2 = _sync(model)
            seconds["values"] += t1 - t0
            seconds["solve"] += t2 - t1
            diagnostics += _diag(group, targets, norm)
    except BaseException:
        if delta.originals:
            delta.restore()
        raise
    return EditResult(m.name, ctx.layers, delta, diagnostics, ctx.hp, _cov_label(ctx), seconds, ctx.state)


def _cov_label(ctx: EditContext) -> str:
    return "stats" if any(c.label == "stats" for c in ctx.covs.values()) else "identity"


def edit_each(model: nn.Module, tok, cases, method: str = "r-rome", layer: int | None = None,
              layers: list[int] | None = None, hparams: EditHParams | dict | None = None,
              stats: Mapping[int, torch.Tensor] | None = None, adapter: ArchAdapter | None = None,
              batch_size: int = 16, name: str | None = None) -> Iterator[EditResult]:
    """Yield one applied edit per case, all from the unedited model; restore each before asking for the next.

    The v* of up to `batch_size` cases are optimised together (one forward per step), which is what makes a
    brute-force layer sweep affordable. seconds["values"] of a result is its share of the batch's time.
    """
    m, cases, ctx = _prepare(model, tok, cases, method, layer, layers, hparams, stats, adapter, name)
    for start in range(0, len(cases), batch_size):
        chunk = cases[start: start + batch_size]
        t0 = _sync(model)
        targets = optimise_values(model, tok, ctx.adapter, chunk, ctx.templates, ctx.hp, m.site, ctx.layers[-1])
        share = (_sync(model) - t0) / len(chunk)
        yield from _apply_each(model, m, ctx, chunk, targets, share, "edit_each")

def edit_grid(model: nn.Module, tok, cases, layers: list[int], method: str = "r-rome",
              hparams: EditHParams | dict | None = None, stats: Mapping[int, torch.Tensor] | None = None,
              adapter: ArchAdapter | None = None, name: str | None = None) -> Iterator[EditResult]:
    """Yield one applied edit per (layer, case), layer-major, all from the unedited model; restore each before
    asking for the next. The v* of every case at every layer are optimised together in one batch
    (`optimise_values_layers`): a layer sweep of few cases then costs one optimisation instead of one per layer.
    For methods that edit one layer (ROME, R-ROME, EMMET, AlphaEdit). seconds["values"] of a result is its share
    of the batch's time."""
    layers = [int(layer) for layer in layers]
    if not layers:
        raise ValueError("edit_grid needs at least one layer")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers repeat: {layers}")
    prepared = [_prepare(model, tok, cases, method, layer, None, hparams, stats, adapter, name) for layer in layers]
    m, cases = prepared[0][0], prepared[0][1]
    if m.multi_layer:
        raise ValueError(f"{m.name} edits a range of layers at once; edit_grid is for methods that edit one layer")
    first = prepared[0][2]
    t0 = _sync(model)
    grid = optimise_values_layers(model, tok, first.adapter, cases, first.templates, first.hp, m.site, layers)
    share = (_sync(model) - t0) / (len(cases) * len(layers))
    for layer, (_, _, ctx) in zip(layers, prepared, strict=True):
        yield from _apply_each(model, m, ctx, cases, grid[layer], share, "edit_grid")


def _apply_each(model, m: EditMethod, ctx: EditContext, cases: list[EditCase], targets: ValueTargets, share: float,
                caller: str) -> Iterator[EditResult]:
    """Apply each case's edit from its v* in `targets`, yield it, and check it was restored before the next."""
    for i, case in enumerate(cases):
        delta = WeightDelta(model, ctx.adapter, label=f"{m.name}@{ctx.layers}:{case.case_id}")
        t1 = _sync(model)
        one = replace(ctx, state=ctx.state.copy()) if ctx.state is not None else ctx  # each from the same state
        try:
            norm = m.apply(one, [case], targets.subset([i]), delta)
        except BaseException:
            if delta.originals:
                delta.restore()
            raise
        seconds = {"values": share, "solve": _sync(model) - t1}
        yield EditResult(m.name, ctx.layers, delta, _diag([case], targets.subset([i]), norm), ctx.hp,
                         _cov_label(ctx), seconds, one.state)
        if not delta.restored:
            raise EditOrderError(f"restore the edit of case {case.case_id!r} at layer {ctx.layers} before asking "
                                 f"{caller} for the next")
