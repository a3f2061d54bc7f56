"""LayerScores: the one table every layer selector produces (docs/equations.md "Layer selection"; docs/design.md "The flow").

A selector (LGA, CMA, and later brute force) scores every layer of one model on a set of edit cases. The
result is a per-layer score vector (higher is better for every selector), the metadata needed to compare
selectors (selector name, dataset, model, number of cases, wall time) and, when the selector works case by
case, the per-case matrix (cases x layers) it averaged. Brute force fills the same table with a metric's
per-case values, so the golden layer (argmax of the mean) and the sample-wise optimal layers (per-case
argmax, first tied layer as in the paper) both read from it.

`to_rows()` gives the canonical result columns `COLUMNS`, one row per layer; `pick()` applies Tukey's fences
(goldenlayers.selection.pick) before the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLUMNS = ("selector", "dataset", "model", "layer", "score", "cases", "seconds")


def model_label(model) -> str:
    """The model's name for the table: its `name_or_path`, else its `model_type`."""
    return getattr(model.config, "name_or_path", "") or model.config.model_type


def dataset_label(datasets) -> str:
    """One label for the datasets of a case set: the name itself, or "a+b" (sorted) for a union of datasets."""
    names = sorted({str(d) for d in datasets})
    return "+".join(names) if names else "-"


@dataclass
class LayerScores:
    """Per-layer scores of one selector on one case set.

    layers: (L,) the scored layer indices, ascending. scores: (L,) float64, higher is better.
    per_case: optional (N, L) matrix whose column means are `scores`; case_ids: its N row labels.
    cases: number of cases that contributed. seconds: wall time of the whole selector run.
    skipped: case_id -> reason for cases the selector could not use (bad data, unknown fact, ...).
    meta: selector settings and side figures (e.g. CMA's noise std, LGA's variant), JSON-serialisable.
    """

    selector: str
    dataset: str
    model: str
    layers: list[int]
    scores: np.ndarray
    cases: int
    seconds: float = 0.0
    per_case: np.ndarray | None = None
    case_ids: list[str] | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.layers = [int(layer) for layer in self.layers]
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.shape != (len(self.layers),):
            raise ValueError(f"{self.selector}: {len(self.layers)} layers but scores of shape {self.scores.shape}")
        if sorted(set(self.layers)) != self.layers:
            raise ValueError(f"{self.selector}: layers must be distinct and ascending, got {self.layers}")
        if self.per_case is not None:
            self.per_case = np.asarray(self.per_case, dtype=np.float64)
            if self.per_case.ndim != 2 or self.per_case.shape[1] != len(self.layers):
                raise ValueError(
                    f"{self.selector}: per-case matrix of shape {self.per_case.shape} does not have "
                    f"{len(self.layers)} layer columns"
                )
            if self.case_ids is not None and len(self.case_ids) != self.per_case.shape[0]:
                raise ValueError(
                    f"{self.selector}: {len(self.case_ids)} case ids for {self.per_case.shape[0]} per-case rows"
                )

    def score_of(self, layer: int) -> float:
        try:
            return float(self.scores[self.layers.index(layer)])
        except ValueError:
            raise KeyError(f"{self.selector}: layer {layer} was not scored (scored: {self.layers})") from None

    def ranking(self) -> list[int]:
        """All scored layers, best first; ties keep ascending layer order (the paper reports the first tie)."""
        order = np.argsort(-self.scores, kind="stable")
        return [self.layers[i] for i in order]

    def best(self) -> int:
        """The argmax layer (first of tied layers), without outlier exclusion. See `pick()` for Tukey's fences."""
        return self.ranking()[0]

    def pick(self, k: float = 1.5, top: int = 5):
        """Tukey-fenced argmax: see `goldenlayers.selection.pick.pick_layer`."""
        from goldenlayers.selection.pick import pick_layer

        return pick_layer(self, k=k, top=top)

    def to_rows(self) -> list[dict]:
        """One dict per layer with the canonical columns `COLUMNS`."""
        return [
            dict(zip(COLUMNS, (self.selector, self.dataset, self.model, layer, float(score), self.cases,
                               float(self.seconds)), strict=True))
            for layer, score in zip(self.layers, self.scores, strict=True)
        ]

    @classmethod
    def from_per_case(cls, selector: str, dataset: str, model: str, layers: list[int], per_case,
                      case_ids: list[str], **kw) -> LayerScores:
        """Build the table from a (N, L) per-case matrix; scores are its column means (N >= 1)."""
        per_case = np.asarray(per_case, dtype=np.float64)
        if per_case.shape[0] == 0:
            skipped = kw.get("skipped") or {}
            first = f"; first: {next(iter(skipped.values()))}" if skipped else ""
            raise ValueError(f"{selector}: no usable case ({len(skipped)} skipped{first})")
        return cls(selector, dataset, model, layers, per_case.mean(axis=0), cases=per_case.shape[0],
                   per_case=per_case, case_ids=list(case_ids), **kw)
