"""LayerScores: the package's one score table (docs/equations.md "Layer selection"; docs/selection.md "The common
table"; docs/golden.md).

A selector (race, LGA, CMA, brute force) scores every layer of one model on a set of edit cases. The result is a
per-layer score vector (higher is better for every selector), the metadata needed to compare selectors (selector
name, dataset, model, number of cases, wall time) and, when the selector works case by case, the per-case matrix
(cases x layers) it averaged. The same table holds one metric's per-case values from brute-force rows
(`LayerScores.from_rows`, the metric's raw values with its direction in `higher_is_better`), and the golden layer
(best mean) and the sample-wise optimal layers (per-case best, first tied layer as in the paper) of
goldenlayers.selection.golden read its `per_case` matrix.

`to_rows()` gives the canonical result columns `COLUMNS`, one row per layer; `pick()` applies Tukey's fences
(goldenlayers.selection.pick) before the argmax.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from goldenlayers.evaluation.metrics import LOWER_IS_BETTER
from goldenlayers.evaluation.result import records

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

    layers: (L,) the scored layer indices, ascending. scores: (L,) float64.
    per_case: optional (N, L) matrix whose column means are `scores`; case_ids: its N row labels.
    cases: number of cases that contributed. seconds: wall time of the whole selector run.
    skipped: case_id -> reason for cases the selector could not use (bad data, unknown fact, a layer without a
    value, ...).
    meta: selector settings and side figures (e.g. CMA's noise std, LGA's variant, a metric table's "metric"),
    JSON-serialisable.
    higher_is_better: the direction of `scores` and `per_case`: True for every selector's table; a metric table
    from `from_rows` keeps the metric's raw values, so it is False for a lower-is-better metric (fluency).
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
    higher_is_better: bool = True

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

    @property
    def metric(self) -> str:
        """The metric a table of metric values holds (`meta["metric"]`), else the selector's name."""
        return self.meta.get("metric", self.selector)

    def score_of(self, layer: int) -> float:
        try:
            return float(self.scores[self.layers.index(layer)])
        except ValueError:
            raise KeyError(f"{self.selector}: layer {layer} was not scored (scored: {self.layers})") from None

    def ranking(self) -> list[int]:
        """All scored layers, best first (lowest first when not higher_is_better); ties keep ascending layer order (the paper reports the first tie)."""
        order = np.argsort(-self.scores if self.higher_is_better else self.scores, kind="stable")
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

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], metric: str, *, dataset: str = "-", model: str = "-",
                  selector: str = "bruteforce") -> LayerScores:
        """One metric's table from long rows (case_id, layer, metric, value; or EvalRows): per_case = the raw
        values (cases x layers), scores = their layer means, higher_is_better = the metric's direction. Layers are
        the union seen; a case missing any of them is left out (in `skipped`); a repeated (case, layer) is an
        error, and so is a metric without rows or without one case scored at every layer."""
        cells: dict[str, dict[int, float]] = {}
        for r in records(rows):
            if r["metric"] != metric:
                continue
            per_case = cells.setdefault(str(r["case_id"]), {})
            layer = int(r["layer"])
            if layer in per_case:
                raise ValueError(f"case {r['case_id']!r}: two {metric!r} values at layer {layer}")
            per_case[layer] = float(r["value"])
        if not cells:
            raise ValueError(f"no rows of metric {metric!r}")
        layers = sorted({layer for per_case in cells.values() for layer in per_case})
        kept = [c for c in cells if len(cells[c]) == len(layers)]
        dropped = {c: f"no {metric!r} value at layers {sorted(set(layers) - set(cells[c]))}"
                   for c in cells if len(cells[c]) != len(layers)}
        values = np.array([[cells[c][layer] for layer in layers] for c in kept]).reshape(len(kept), len(layers))
        return cls.metric_table(metric, kept, layers, values, dataset=dataset, model=model, skipped=dropped,
                                selector=selector)

    @classmethod
    def metric_table(cls, metric: str, case_ids: list[str], layers: list[int], values, *, dataset: str = "-",
                     model: str = "-", skipped: dict[str, str] | None = None, selector: str = "bruteforce",
                     higher_is_better: bool | None = None) -> LayerScores:
        """The table of one metric's raw per-case values (N, L); direction: the metric's unless given."""
        if not case_ids:
            raise ValueError(f"{metric} ({dataset}): no cases ({len(skipped or {})} dropped for lacking a score at "
                             "some layer)")
        direction = metric not in LOWER_IS_BETTER if higher_is_better is None else higher_is_better
        return cls.from_per_case(selector, dataset, model, layers, values, case_ids, skipped=dict(skipped or {}),
                                 meta=dict(metric=metric), higher_is_better=direction)

    def subset(self, case_ids: Iterable[str], dataset: str | None = None) -> LayerScores:
        """The table of the per-case rows of `case_ids` (in that order; ids not in the table are skipped, e.g.
        dropped cases); same metric, direction and layers."""
        values, ids = self.matrix()
        index = {c: i for i, c in enumerate(ids)}
        keep = [c for c in case_ids if c in index]
        rows = values[[index[c] for c in keep]].reshape(len(keep), len(self.layers))
        return LayerScores.metric_table(self.metric, keep, self.layers, rows, dataset=dataset or self.dataset,
                                        model=self.model, selector=self.selector,
                                        higher_is_better=self.higher_is_better)

    def matrix(self) -> tuple[np.ndarray, list[str]]:
        """(per_case (N, L), case_ids): ValueError when the table has no per-case matrix with case ids."""
        if self.per_case is None or self.case_ids is None:
            raise ValueError(f"{self.selector}: the table has no per-case matrix with case ids")
        return self.per_case, self.case_ids
