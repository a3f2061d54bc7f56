"""Overall: the mean of min-max normalised metrics over the compared rows (REFERENCE.md section 4; paper App. A).

The compared rows are the layers or methods being compared on one dataset (one row each, holding the mean of
each metric). For every metric available in all rows:
    v = -x for lower-is-better metrics (fluency: the paper negates it first), else v = x
    norm = (v - min v) / (max v - min v)          (min and max over the compared rows)
and Overall of a row = mean of its normalised metrics. A metric equal in every row separates nothing: it is
left out of the mean (and named in the note), so with a single row there is no Overall (NaN). The note that
states this normalisation travels with every Overall value (`OverallResult.normalisation`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from goldenlayers.evaluation.metrics import LOWER_IS_BETTER, METRICS


@dataclass(frozen=True)
class OverallResult:
    """values: Overall of each compared row (NaN when undefined); used / constant: metrics in / left out of the mean."""

    values: list[float]
    used: list[str]
    constant: list[str]
    normalisation: str


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def overall(rows: Sequence[Mapping[str, float | None]], metrics: Sequence[str] | None = None,
            lower_is_better: frozenset[str] = LOWER_IS_BETTER) -> OverallResult:
    """Overall of each row of `rows` ({metric: value}), min-max normalised over the rows (see module docstring).

    metrics: the metrics to combine (default: those of METRICS with a finite value in every row).
    """
    names = list(metrics) if metrics is not None else list(METRICS)
    available = [m for m in names if rows and all(_finite(r.get(m)) for r in rows)]
    if metrics is not None and len(available) != len(names):
        missing = [m for m in names if m not in available]
        raise ValueError(f"metric(s) {missing} are missing or not finite in some compared rows")
    used, constant = [], []
    columns: list[list[float]] = []
    for m in available:
        v = [(-1.0 if m in lower_is_better else 1.0) * float(r[m]) for r in rows]
        lo, hi = min(v), max(v)
        if hi == lo:
            constant.append(m)
            continue
        used.append(m)
        columns.append([(x - lo) / (hi - lo) for x in v])
    values = [sum(col[i] for col in columns) / len(columns) if columns else math.nan for i in range(len(rows))]
    negated = [m for m in used if m in lower_is_better]
    note = f"min-max over {len(rows)} compared row(s) of {', '.join(used) or 'no varying metric'}"
    if negated:
        note += f" ({', '.join(negated)} negated first)"
    if constant:
        note += f"; equal in all rows, left out: {', '.join(constant)}"
    return OverallResult(values, used, constant, note)
