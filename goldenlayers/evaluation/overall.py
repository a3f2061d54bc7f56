"""Overall: one fixed score of one row of metric means (paper sections 3 and A; docs/evaluation.md "Overall"), the
only place it is computed: tables, `compare`, runs, the regret of selectors and the report all call `overall`.

The paper: "an Overall metric that is simply a weighted average of all other metrics (Fluency negated prior to
summation), where higher values denote better performance". Its own tables are reproduced by the plain mean of
the accuracies and 1 - fluency on a 0-1 scale (e.g. WikiBio, R-ROME, CMA: (0.6894 + 0.5692 + (1 - 0.8927)) / 3 =
0.4553; Counterfact: (0.9420 + 0.6284 + 0.9613 + 0.4387) / 4 = 0.7426). So here, for one row {metric: value}:

    s_m = value                                        higher-is-better metrics: rewrite, rephrase, locality,
                                                       portability (in [0, 1])
    s_m = 1 - clip(value / fluency_max_bits, 0, 1)     lower-is-better metrics: fluency, in bits
    Overall = sum_m w_m s_m / sum_m w_m                   over the metrics with a finite value in the row

with equal weights w_m = 1 by default (`OverallSpec`, configurable), over the metrics registered with
in_overall (goldenlayers.metric_names: each metric's direction comes from there, as for golden layers). fluency_max_bits = log2(100) = 6.644 bits is
the entropy of 100 equally frequent n-grams, the most a 100-token sample (the fluency default) can reach, so the
fixed transform maps every fluency value to [0, 1]; fluency counts lower-is-better, as in the paper. A metric
absent from the row (not measured, or not supported by the dataset) is left out of the mean; with none left,
Overall is NaN. Overall depends on nothing but the row, so the same layer has the same Overall in every table,
and differences of Overall (regret) compare across tables and runs. Rows compared with each other should hold
the same metrics (`overall_note` names them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from goldenlayers.metric_names import OVERALL_METRICS as METRICS
from goldenlayers.metric_names import higher_is_better

FLUENCY_MAX_BITS = math.log2(100)


class OverallSpec(BaseModel):
    """weights: {metric: weight >= 0} (metrics not named weigh 1; weight 0 leaves a metric out);
    fluency_max_bits: the fluency that maps to the worst fluency score (0 after negation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: dict[str, float] = Field(default_factory=dict)
    fluency_max_bits: float = Field(FLUENCY_MAX_BITS, gt=0)

    @field_validator("weights")
    @classmethod
    def _check(cls, w: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(w) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
        bad = [m for m, v in w.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"weights must be finite and >= 0; got {', '.join(f'{m}={w[m]}' for m in bad)}")
        if all(w.get(m, 1.0) == 0 for m in METRICS):
            raise ValueError("at least one metric needs a weight > 0")
        return w

    def weight(self, metric: str) -> float:
        return float(self.weights.get(metric, 1.0))

    @classmethod
    def parse(cls, text: str | None) -> OverallSpec:
        """From "rewrite=2,fluency=0" (the CLI form; empty or None: the default). ValueError names the bad part."""
        weights = {}
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            name, _, value = (x.strip() for x in part.partition("="))
            try:
                weights[name] = float(value)
            except ValueError:
                raise ValueError(f"bad weight {part!r}: write metric=number, e.g. rewrite=2") from None
        try:
            return cls(weights=weights)
        except ValidationError as e:
            raise ValueError(e.errors()[0]["msg"].removeprefix("Value error, ")) from None


DEFAULT_OVERALL = OverallSpec()


def metric_score(metric: str, value, spec: OverallSpec = DEFAULT_OVERALL):
    """A metric's value on the 0-1, higher-is-better scale Overall averages (a lower-is-better metric, fluency:
    1 - clip(bits / max))."""
    v = np.asarray(value, dtype=np.float64)
    if not higher_is_better(metric):
        v = 1.0 - np.clip(v / spec.fluency_max_bits, 0.0, 1.0)
    return float(v) if v.ndim == 0 else v


def overall(row: Mapping[str, object], spec: OverallSpec | None = None):
    """Overall of one row {metric: value} (see the module docstring). Values may be arrays of one shape (e.g. the
    per-layer means of each metric): then Overall is computed element-wise and an array comes back. Keys that are
    not metrics (cases, layer, overall, ...) are ignored; None or NaN values count as absent."""
    spec = spec or DEFAULT_OVERALL
    num = den = 0.0
    for m in METRICS:
        w, value = spec.weight(m), row.get(m)
        if value is None or w == 0:
            continue
        v = np.asarray(value, dtype=np.float64)
        present = np.isfinite(v)
        num = num + w * np.where(present, metric_score(m, np.where(present, v, 0.0), spec), 0.0)
        den = den + w * present
    den = np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)
    return float(out) if out.ndim == 0 else out


def overall_metrics(row: Mapping[str, object], spec: OverallSpec | None = None) -> list[str]:
    """The metrics of `row` that enter its Overall (finite somewhere, weight > 0), in METRICS order."""
    spec = spec or DEFAULT_OVERALL
    return [m for m in METRICS if spec.weight(m) > 0 and row.get(m) is not None
            and np.isfinite(np.asarray(row[m], dtype=np.float64)).any()]


def overall_note(metrics=None, spec: OverallSpec | None = None) -> str:
    """The one-line statement of the definition that travels with Overall numbers (tables, JSON)."""
    spec = spec or DEFAULT_OVERALL
    names = [m for m in (metrics if metrics is not None else METRICS) if m in METRICS and spec.weight(m) > 0]
    terms = [m if higher_is_better(m) else f"(1 - {m}/{spec.fluency_max_bits:.3g} bits)" for m in names]
    weights = {spec.weight(m) for m in names}
    if len(weights) > 1:
        terms = [f"{spec.weight(m):g}*{t}" for m, t in zip(names, terms, strict=True)]
        return f"Overall = weighted mean of {', '.join(terms) or 'no metric'} (fixed per row)"
    return f"Overall = mean of {', '.join(terms) or 'no metric'} (fixed per row)"
