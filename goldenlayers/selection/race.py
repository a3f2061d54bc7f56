"""Racing brute force ("race"): find the golden layer by successive halving over real edits on the proxy set
(docs/selection.md "The race selector"; beyond the paper, whose golden layer is the brute-force argmax of
section 4 and whose cheap estimate is LGA, section 5).

Brute force on the proxy set edits every proxy case at every layer. The race spends a fixed fraction of that:
- round 0: every layer, the first `first_cases` proxy cases, v* optimised with `first_steps` x the preset's
  `v_num_grad_steps` (fewer Adam steps: a cheap, noisier edit);
- round r >= 1: the best 1/`eta` of the layers still racing (by their round estimate), `eta` times as many
  cases (a prefix of the proxy cases, so a layer's earlier full-step cells are reused), the full preset;
- it stops when one layer is left or every proxy case was used; the chosen layer is the best of the last round.
A round 0 with fewer steps that says nothing about where edits work is run again at full steps on the same cases
(counted in `meta["repeated_cells"]`; those cells are reused by the later rounds): when no edit of it rewrote any
target token at any layer, or its estimates all lie within `min_spread` of each other. On models trained by
train-world with 12 layers, R-ROME's default-small edits nothing in a quarter of its steps: the estimates were then
locality alone, a one-case locality blip decided the ranking, and the race chose layer 3 or 4 where the golden layer
was 0 (regret 0.15-0.24 in 3 of 6 runs; docs/selection.md).
Round 0 ranks layers by their estimate smoothed over neighbouring layers (weights 1/4, 1/2, 1/4; `smooth`): with two
to four cases per layer a single estimate is noisy, while Overall changes slowly from one layer to the next
(simulated on a 120-case default-gpt2 sweep, 300 random 12-case proxy sets, round 0 at full steps: mean regret
0.0136 smoothed vs 0.0149 not; brute force on the whole proxy set: 0.0118).
A round's estimate of a layer is the Overall (goldenlayers.evaluation.overall, the fixed score of the ground truth)
of the layer's metric means over the round's cases, as the ground truth's per-layer Overall is computed, from the
sweep metrics (rewrite, rephrase, locality, portability; a metric only some cases have is averaged over those).

Budget: `budget` is the share of a brute-force sweep of the TEST set the race may cost, assuming the paper's split
(test = `test_ratio` x proxy, 9 for 10 % / 90 %), in (case, layer) cells at the full preset. A cell with a share
f of the steps is planned at (1 + 3 f) / 4 of a full cell (scoring and the edit's fixed work do not shrink with f).
`plan_race` takes the largest `first_cases` (up to the given one) whose plan fits; with 1 it runs whatever it
costs and says so in `meta["over_budget"]`. The measured cost is wall time (`seconds`), compared with the
sweep's wall time by goldenlayers.selection.regret.

The LayerScores table ranks layers by how far they got, then by their last estimate: score = round reached +
estimate / 2 (an Overall lies in [0, 1], so a layer that survived longer always ranks higher); `meta["rounds"]`
holds every round's layers, cases, steps and estimates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from goldenlayers.cases import EditCase
from goldenlayers.selection.table import LayerScores, dataset_label, model_label


class RaceSettings(BaseModel):
    """eta: keep the best 1/eta each round; first_cases / first_steps: round 0's cases and share of v* steps;
    budget: share of the test-set sweep the plan may cost (test = test_ratio x proxy cases); min_spread: a round 0
    with fewer steps whose layer estimates all lie within this of each other (or none of whose edits rewrote a
    target token) is run again at full steps."""

    model_config = ConfigDict(extra="forbid")

    eta: int = Field(3, ge=2)
    first_cases: int = Field(4, ge=1)
    first_steps: float = Field(0.25, gt=0, le=1)
    budget: float = Field(0.03, gt=0)
    test_ratio: float = Field(9.0, gt=0)
    smooth: bool = True
    min_spread: float = Field(0.01, ge=0)


@dataclass(frozen=True)
class Round:
    layers: int
    cases: int
    steps: float  # share of the preset's v* steps


def cell_cost(steps: float) -> float:
    """Planned cost of one (case, layer) cell with a share `steps` of the v* steps, in full cells."""
    return (1 + 3 * steps) / 4


def plan_rounds(n_layers: int, n_cases: int, first_cases: int, eta: int, first_steps: float) -> list[Round]:
    """The rounds of a race on n_layers layers and n_cases proxy cases (see the module docstring)."""
    rounds, layers, cases, steps = [], n_layers, min(first_cases, n_cases), first_steps
    while True:
        rounds.append(Round(layers, cases, steps))
        if layers <= 1 or (cases >= n_cases and steps >= 1):
            return rounds
        layers, cases, steps = max(1, math.ceil(layers / eta)), min(n_cases, cases * eta), 1.0
        if layers == 1:
            return rounds


def plan_cost(rounds: list[Round]) -> float:
    """Planned cells (full-cell units) of `rounds`; full-step cells of a layer are reused by its next rounds."""
    cost, done = 0.0, 0  # done: full-step cases already edited at every still-racing layer
    for r in rounds:
        new = r.cases - (done if r.steps >= 1 else 0)
        cost += r.layers * new * cell_cost(r.steps)
        done = r.cases if r.steps >= 1 else 0
    return cost


def plan_race(n_layers: int, n_cases: int, s: RaceSettings) -> tuple[list[Round], float, float]:
    """(rounds, planned cost, budget) in full cells: the largest first_cases <= s.first_cases that fits."""
    budget = s.budget * s.test_ratio * n_cases * n_layers
    for first in range(min(s.first_cases, n_cases), 0, -1):
        rounds = plan_rounds(n_layers, n_cases, first, s.eta, s.first_steps)
        if plan_cost(rounds) <= budget or first == 1:
            return rounds, plan_cost(rounds), budget
    raise AssertionError("unreachable")


def race_scores(model, tok, cases: Sequence[EditCase], editor: str = "r-rome", hparams=None, stats=None,
                layers: Sequence[int] | None = None, overall_spec=None, batch_size: int = 16, progress: bool = True,
                model_name: str | None = None, metrics: Sequence[str] | None = None, **settings) -> LayerScores:
    """Race the layers on `cases` with `editor` (its `hparams`, key statistics `stats`); see the module docstring.
    Cells that fail count as rewrite 0 and locality 0 at their layer (a layer where the edit breaks is a bad layer)."""
    from goldenlayers.editing.hparams import resolve_settings
    from goldenlayers.evaluation.cells import edit_cells
    from goldenlayers.evaluation.overall import overall
    from goldenlayers.models.adapters import get_adapter
    from goldenlayers.selection.bruteforce import make_default_fns
    from goldenlayers.selection.sweep_fns import SWEEP_METRICS

    s = RaceSettings(**settings)
    start = time.perf_counter()
    cases = list(cases)
    if not cases:
        raise ValueError("the race needs at least one case")
    adapter = get_adapter(model)
    layers = sorted(adapter.check_layer(model, layer) for layer in (layers or range(adapter.n_layers(model))))
    hp = resolve_settings(model, editor, None, hparams, name=model_name)
    full_steps = hp.v_num_grad_steps
    rounds, planned, budget = plan_race(len(layers), len(cases), s)
    metrics = tuple(metrics or SWEEP_METRICS)
    fns = {}  # steps share -> sweep callables (one scorer each; the pre-edit cache is per scorer)

    def run(cells_cases: list[EditCase], at: list[int], steps: float) -> dict[tuple[str, int], dict]:
        if steps not in fns:
            n = max(1, round(full_steps * steps))
            fns[steps] = make_default_fns(model, tok, editor, hp.model_copy(update=dict(v_num_grad_steps=n)),
                                          stats=stats, name=model_name, metrics=metrics)
        # (case, layer) pairs of up to `batch_size` in one v* optimisation: a round's few cases at many layers
        res = edit_cells(cells_cases, at, progress=progress, batch_size=batch_size, desc=f"race ({len(at)} layers)",
                         layer_batch=max(1, batch_size // len(cells_cases)), **fns[steps].kwargs())
        by_cell: dict[tuple[str, int], dict] = {}
        for r in res.records():
            by_cell.setdefault((r["case_id"], int(r["layer"])), {})[r["metric"]] = r["value"]
        for f in res.failures:  # an edit that breaks scores 0 on what every case has
            by_cell[(f.case_id, f.layer)] = dict(rewrite=0.0, locality=0.0)
        return by_cell

    def estimate_of(cells: list[dict]) -> float:
        """Overall of the metric means over the cells (as the ground truth's per-layer Overall)."""
        names = {m for c in cells for m in c}
        return float(np.nan_to_num(overall({m: np.mean([c[m] for c in cells if m in c]) for m in names},
                                           overall_spec)))

    full: dict[tuple[str, int], dict] = {}  # full-step cells, reused across rounds
    reached = {layer: 0 for layer in layers}
    estimate = {layer: 0.0 for layer in layers}
    history, racing = [], list(layers)
    repeated = 0  # full-step cells of a round 0 run again (see RaceSettings.min_spread)
    for i, r in enumerate(rounds):
        racing = racing[:r.layers]
        these = cases[:r.cases]
        if r.steps >= 1:
            todo = [c for c in these if any((c.case_id, layer) not in full for layer in racing)]
            full.update(run(todo, racing, 1.0) if todo else {})
            cell = full
        else:
            cell = run(these, racing, r.steps)
            est = [estimate_of([cell[(c.case_id, layer)] for c in these]) for layer in racing]
            rewrite = [cell[(c.case_id, layer)].get("rewrite", np.nan) for layer in racing for c in these]
            no_edit = not np.isnan(rewrite).all() and np.nanmax(rewrite) <= 0
            if no_edit or max(est) - min(est) < s.min_spread:  # uninformative: too few steps to tell layers apart
                history.append(dict(layers=list(racing), cases=r.cases, steps=r.steps,
                                    estimates=[round(e, 6) for e in est], uninformative=True))
                full.update(run(these, racing, 1.0))
                cell, repeated = full, repeated + len(racing) * len(these)
        for layer in racing:
            estimate[layer] = estimate_of([cell[(c.case_id, layer)] for c in these])
            reached[layer] = i
        rank = dict(estimate)
        if i == 0 and s.smooth and len(racing) > 2:  # racing is every layer, ascending, in round 0
            est = np.array([estimate[layer] for layer in racing])
            rank = dict(zip(racing, np.convolve(np.pad(est, 1, mode="edge"), [0.25, 0.5, 0.25], "valid"), strict=True))
        racing.sort(key=lambda layer: (-rank[layer], layer))
        history.append(dict(layers=list(racing), cases=r.cases, steps=1.0 if cell is full else r.steps,
                            estimates=[round(estimate[layer], 6) for layer in racing]))
    chosen = racing[0]
    scores = np.array([reached[layer] + estimate[layer] / 2 for layer in layers])
    seconds = time.perf_counter() - start
    meta = dict(s.model_dump(), editor=editor, full_steps=full_steps, chosen=chosen, rounds=history,
                planned_cells=round(planned + repeated, 2), budget_cells=round(budget, 2),
                over_budget=planned + repeated > budget, repeated_cells=repeated,
                brute_force_proxy_cells=len(cases) * len(layers))
    return LayerScores("race", dataset_label(c.dataset for c in cases), model_name or model_label(model), layers,
                       scores, len(cases[:rounds[-1].cases]), seconds=seconds, meta=meta)


def race_select(inp, s: RaceSettings) -> LayerScores:
    """The race selector's scoring function (goldenlayers.selection.registry.SelectionInput): `race_scores` with
    the input's editor, hparams, key statistics and edit batch."""
    return race_scores(inp.model, inp.tok, inp.cases, editor=inp.editor, hparams=inp.hparams, stats=inp.stats,
                       layers=inp.layers, overall_spec=inp.overall_spec, batch_size=inp.batch_size,
                       progress=inp.progress, model_name=inp.model_name, **s.model_dump())
