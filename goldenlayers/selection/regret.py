"""Selectors scored against brute force: regret, rank correlation and cost (docs/selection.md "Scoring selectors").

The ground truth is a brute-force sweep of the TEST set: every case edited at every layer, each metric's mean per
layer (`GroundTruth`, from the sweep's rows). Its golden layers (per metric and for Overall) are those of
goldenlayers.selection.golden.golden_layers, and Overall is goldenlayers.evaluation.overall's fixed per-row score.
For a selector that chose layer c:
- regret (Overall) = Overall(test means at the Overall golden layer) - Overall(test means at c), >= 0;
- regret of a metric = its best layer mean - its mean at c (fluency, lower-is-better: mean at c - lowest), >= 0;
- Spearman's rho of the selector's per-layer scores (higher is better in every LayerScores) with the per-layer
  test Overall, over the layers both have (goldenlayers.selection.agreement, scipy.stats.spearmanr; NaN when fewer
  than 2 layers are shared or either side is constant, where no rank correlation exists);
- cost = the selector's wall time / the wall time of the test sweep.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from goldenlayers.evaluation.metrics import METRICS
from goldenlayers.evaluation.overall import OverallSpec
from goldenlayers.evaluation.result import records
from goldenlayers.selection.agreement import agreement
from goldenlayers.selection.golden import (
    OVERALL,
    best_layer,
    higher_is_better,
    layer_means,
    overall_curve,
)
from goldenlayers.selection.table import LayerScores


@dataclass
class GroundTruth:
    """Per-layer test-set means of every metric from a brute-force sweep. layers: (L,) ascending; means:
    {metric: (L,)}; cases: cases with a value at every layer (the others are left out); seconds: sweep time."""

    layers: list[int]
    means: dict[str, np.ndarray]
    cases: int
    seconds: float
    spec: OverallSpec | None = None
    golden: dict[str, int] = field(init=False)
    overall: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.means = {m: np.asarray(v, dtype=np.float64) for m, v in self.means.items() if m != OVERALL}
        bad = [m for m, v in self.means.items() if v.shape != (len(self.layers),)]
        if not self.means or bad:
            raise ValueError(f"ground truth needs one mean per layer ({len(self.layers)}) of some metric; bad: {bad}")
        self.overall = overall_curve(self.means, self.spec)
        self.golden = {m: best_layer(m, self.layers, v) for m, v in [*self.means.items(), (OVERALL, self.overall)]}

    @classmethod
    def from_matrices(cls, matrices: Mapping[str, LayerScores], seconds: float = 0.0,
                      spec: OverallSpec | None = None) -> GroundTruth:
        """From each metric's LayerScores table of per-case values (LayerScores.from_rows)."""
        layers, means = layer_means(matrices)
        return cls(layers, means, max(m.cases for m in matrices.values()), seconds, spec)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], seconds: float | None = None,
                  spec: OverallSpec | None = None) -> GroundTruth:
        """From sweep rows (EvalRows, or records case_id, layer, metric, value[, seconds]); seconds defaults to the summed seconds of
        the distinct (case, layer) cells."""
        rows = records(rows)
        metrics = [m for m in METRICS if any(r["metric"] == m for r in rows)]
        if not metrics:
            raise ValueError("the brute-force sweep produced no metric rows")
        if seconds is None:
            seconds = sum({(str(r["case_id"]), int(r["layer"])): float(r.get("seconds", 0.0)) for r in rows}.values())
        return cls.from_matrices({m: LayerScores.from_rows(rows, m) for m in metrics}, seconds, spec)

    def at(self, layer: int) -> dict[str, float]:
        """{metric: test mean at `layer`} and its "overall"."""
        i = self._index(layer)
        return {**{m: float(v[i]) for m, v in self.means.items()}, OVERALL: float(self.overall[i])}

    def regret(self, layer: int) -> dict[str, float]:
        """{metric: regret at `layer`} for every metric and "overall" (see the module docstring), all >= 0."""
        i = self._index(layer)
        out = {}
        for m, v in [*self.means.items(), (OVERALL, self.overall)]:
            best = v.max() if higher_is_better(m) else v.min()
            out[m] = float(best - v[i]) if higher_is_better(m) else float(v[i] - best)
        return out

    def _index(self, layer: int) -> int:
        try:
            return self.layers.index(int(layer))
        except ValueError:
            raise KeyError(f"layer {layer} is not in the brute-force sweep (layers {self.layers})") from None


def spearman(layers: Sequence[int], scores: Sequence[float], truth: GroundTruth) -> float:
    """Spearman's rho of (layers, scores) with the truth's per-layer Overall on their common layers
    (goldenlayers.selection.agreement's; NaN when fewer than 2 layers are shared or a side is constant)."""
    mine = {int(layer): float(s) for layer, s in zip(layers, scores, strict=True) if math.isfinite(s)}
    curve = LayerScores("bruteforce", "-", "-", truth.layers, truth.overall, truth.cases, meta=dict(metric=OVERALL))
    try:
        return agreement(mine, curve).spearman
    except ValueError:  # fewer than 2 shared layers
        return math.nan


@dataclass(frozen=True)
class SelectorScore:
    """One selector against the ground truth: its layer, the test metrics there, regrets, rho and cost."""

    selector: str
    layer: int
    metrics: dict[str, float]
    regret: dict[str, float]
    spearman: float
    seconds: float
    cost: float  # seconds / the test sweep's seconds (NaN when the sweep time is unknown)

    def row(self) -> dict:
        return dict(selector=self.selector, layer=self.layer, **self.metrics, regret=self.regret[OVERALL],
                    **{f"regret_{m}": v for m, v in self.regret.items() if m != OVERALL},
                    spearman=self.spearman, seconds=self.seconds, cost=self.cost)


def score_selector(selector: str, layer: int, truth: GroundTruth, seconds: float,
                   layers: Sequence[int] | None = None, scores: Sequence[float] | None = None) -> SelectorScore:
    """Score one selector's choice (and, when given, its per-layer scores) against `truth`."""
    rho = spearman(layers, scores, truth) if layers is not None and scores is not None else math.nan
    cost = seconds / truth.seconds if truth.seconds > 0 else math.nan
    return SelectorScore(selector, int(layer), truth.at(layer), truth.regret(layer), rho, float(seconds), cost)
