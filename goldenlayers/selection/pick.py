"""Picking the golden-layer estimate from a LayerScores table with Tukey's fences (docs/equations.md "Layer selection";
paper section 5.1 and Appendix A: "we exclude layers with overall outlying gradient scores (measured using
Tukey's fences and the interquartile range)").

Fences over the L layer scores: [Q1 - k IQR, Q3 + k IQR], IQR = Q3 - Q1, quartiles by linear interpolation
between order statistics (numpy's default, "type 7"). Layers outside are excluded; the estimate is the
argmax of the rest (first layer on ties). With k >= 0.5 at least one layer always survives (an order
statistic lies in [Q1, Q3] once L >= 3; for L = 2 the fences reach both scores); for a smaller k that
excludes every layer the pick falls back to the plain argmax and says so (`fallback`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from goldenlayers.selection.table import LayerScores


@dataclass(frozen=True)
class Fences:
    q1: float
    q3: float
    lower: float
    upper: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def tukey_fences(values, k: float = 1.5) -> Fences:
    """Tukey's fences of a 1-D array of scores: (Q1, Q3, Q1 - k IQR, Q3 + k IQR)."""
    if k < 0:
        raise ValueError(f"Tukey k must be >= 0, got {k}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"need a non-empty 1-D array of finite scores, got {v!r}")
    q1, q3 = (float(q) for q in np.quantile(v, [0.25, 0.75]))
    return Fences(q1, q3, q1 - k * (q3 - q1), q3 + k * (q3 - q1))


@dataclass(frozen=True)
class LayerPick:
    """The outcome of picking: `layer` is the estimate; `ranking` the kept layers best first; `top` its head;
    `excluded` the layers outside the fences (ascending); `fallback` True when every layer was excluded."""

    layer: int
    ranking: list[int]
    top: list[int]
    excluded: list[int]
    fences: Fences
    k: float
    fallback: bool = False

    def as_dict(self) -> dict:
        return dict(layer=self.layer, top=self.top, ranking=self.ranking, excluded=self.excluded, k=self.k,
                    q1=self.fences.q1, q3=self.fences.q3, lower=self.fences.lower, upper=self.fences.upper,
                    fallback=self.fallback)


def pick_layer(table: LayerScores, k: float = 1.5, top: int = 5) -> LayerPick:
    """Exclude layers whose score lies outside Tukey's fences (k * IQR), then take the argmax of the rest."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    fences = tukey_fences(table.scores, k)
    inside = (table.scores >= fences.lower) & (table.scores <= fences.upper)
    excluded = [layer for layer, ok in zip(table.layers, inside, strict=True) if not ok]
    kept = [layer for layer in table.ranking() if layer not in excluded]
    fallback = not kept
    if fallback:
        kept = table.ranking()
    return LayerPick(layer=kept[0], ranking=kept, top=kept[:top], excluded=excluded, fences=fences, k=k,
                     fallback=fallback)
