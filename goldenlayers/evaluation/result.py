"""The one row type, the one failure type, and EvalResult with the aggregate table (docs/evaluation.md).

`EvalRow` is what the cell loop (goldenlayers.evaluation.cells) records for every experiment: one row per case,
layer and metric (pre: the unedited model's value, None for locality; post: the edited model's value; seconds:
the cell's share of its batch's wall time); `record()` gives the long form the run store and the golden-layer
code read (value = post). `EvalFailure` is a (case, layer) that produced no rows. Rows have the columns
ROW_COLUMNS. `table()` aggregates the KnowEdit way: a case's portability/locality
value is already the mean over its categories (goldenlayers.evaluation.metrics), and the table averages each metric
over the cases that have it (cases without that kind of probe are skipped), one row per (dataset, method, layer).
Overall is a fixed function of each row's means (goldenlayers.evaluation.overall), stated in the `normalisation`
column; it uses the EasyEdit metrics only. When ROME's efficacy, paraphrase and neighbourhood scores are present,
`rome_score` (and `rome_score_pre`) is their harmonic mean, ROME's overall Score (docs/evaluation.md). `combine()`
merges results of several runs (e.g. one per layer or method) into one table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace

from goldenlayers.evaluation.overall import overall, overall_metrics, overall_note
from goldenlayers.metric_names import ALL_METRICS, ROME_SCORE, ROME_SCORE_PARTS, harmonic_mean

ROW_COLUMNS = ("case_id", "dataset", "metric", "pre", "post", "layer", "method", "seconds")


@dataclass(frozen=True)
class EvalRow:
    case_id: str
    dataset: str
    metric: str
    pre: float | None
    post: float
    layer: int | None
    method: str
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def timed(self, seconds: float) -> EvalRow:
        return replace(self, seconds=seconds)

    def record(self) -> dict:
        """The long form (case_id, dataset, method, layer, metric, value, pre, seconds) of the run store."""
        return dict(case_id=self.case_id, dataset=self.dataset, method=self.method, layer=self.layer,
                    metric=self.metric, value=self.post, pre=self.pre, seconds=self.seconds)


@dataclass(frozen=True)
class EvalFailure:
    """A (case, layer) that produced no rows. stage: prepare | pre | edit | score."""

    case_id: str
    dataset: str
    method: str
    layer: int | None
    stage: str
    reason: str

    @classmethod
    def of(cls, case, method: str, layer: int | None, stage: str, error: BaseException) -> EvalFailure:
        return cls(case.case_id, case.dataset, method, layer, stage, f"{type(error).__name__}: {error}")

    def row(self) -> dict:
        return asdict(self)


def records(rows: Iterable[EvalRow | Mapping]) -> list[Mapping]:
    """Rows as long records (EvalRow.record(); mappings, e.g. the run store's rows, as they are)."""
    return [r.record() if isinstance(r, EvalRow) else r for r in rows]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@dataclass
class EvalResult:
    model: str
    rows: list[EvalRow] = field(default_factory=list)
    failures: list[EvalFailure] = field(default_factory=list)
    seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0

    def metrics(self) -> list[str]:
        present = {r.metric for r in self.rows}
        return [m for m in ALL_METRICS if m in present]

    def table(self) -> list[dict]:
        """One dict per (dataset, method, layer) with rows: cases, failures, each metric's post mean and `<metric>_pre` mean,
        overall and normalisation (the statement of Overall's definition for this row's metrics)."""
        groups: dict[tuple, list[EvalRow]] = {}
        for r in self.rows:
            groups.setdefault((r.dataset, r.method, r.layer), []).append(r)
        metrics = self.metrics()
        table = []
        for (dataset, method, layer), rows in groups.items():
            entry = dict(dataset=dataset, method=method, layer=layer, cases=len({r.case_id for r in rows}),
                         failures=sum((f.dataset, f.method, f.layer) == (dataset, method, layer) for f in self.failures))
            for m in metrics:
                mine = [r for r in rows if r.metric == m]
                entry[m] = _mean([r.post for r in mine])
                entry[f"{m}_pre"] = _mean([r.pre for r in mine if r.pre is not None])
            if all(m in metrics for m in ROME_SCORE_PARTS):
                for suffix in ("", "_pre"):
                    entry[ROME_SCORE + suffix] = harmonic_mean(entry[m + suffix] for m in ROME_SCORE_PARTS)
            entry["overall"] = overall(entry)
            entry["normalisation"] = overall_note(overall_metrics(entry))
            table.append(entry)
        return table

    def failure_summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.failures:
            out[f.stage] = out.get(f.stage, 0) + 1
        return out


def combine(*results: EvalResult) -> EvalResult:
    """One result holding the rows and failures of several runs (their tables then compare all of them)."""
    if not results:
        raise ValueError("nothing to combine")
    out = EvalResult(model="+".join(dict.fromkeys(r.model for r in results)))
    for r in results:
        out.rows += r.rows
        out.failures += r.failures
        out.seconds += r.seconds
        out.cache_hits += r.cache_hits
        out.cache_misses += r.cache_misses
    return out
