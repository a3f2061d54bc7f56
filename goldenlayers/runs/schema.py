"""The row schema of a run store: canonical metric names, the three row kinds and their primary keys.

Defined once here (docs/design.md "House style" 4) and used by the store, the exports and the report.

- result rows: one metric value of one case edited at one layer, keyed by
  (model, dataset, case_id, method, selector, layer, metric); `selector` is "bruteforce" for sweep rows, or the
  selector whose chosen layer was edited ("lga", "cma-mlp-w10", ...); `pre` is the unedited model's value when
  the metric has one; `split` is "proxy" or "test" (docs/equations.md "Proxy set").
- selector rows: one layer score of one selector run, keyed by (selector, dataset, model, layer); `seconds` is
  the wall time of the whole selector run (repeated on every layer row), `cases` the cases that contributed.
- failure rows: a (case, layer) that produced no result rows, keyed by (model, dataset, case_id, method, layer,
  stage); stage is where it failed (prepare, pre, edit, score, ...), `reason` the error text.

Metric directions are the metrics' own (goldenlayers.metric_names, docs/equations.md "Metrics"): every metric is
higher-is-better except fluency, which the paper marks "lower is better" and negates before normalising. Rows
may also hold ROME's CounterFact metrics; Overall is computed over the EasyEdit metrics only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from goldenlayers.metric_names import COUNTERFACT_ROME_METRICS, EASYEDIT_METRICS, ROME_SCORE, higher_is_better

METRICS = (*EASYEDIT_METRICS, "overall")
STORED_METRICS = METRICS + COUNTERFACT_ROME_METRICS  # what a result row may hold
HIGHER_IS_BETTER = {m: higher_is_better(m) for m in (*STORED_METRICS, ROME_SCORE)}
SPLITS = ("proxy", "test")


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # SQLite type: TEXT, INTEGER, REAL
    nullable: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One table of the store: its columns in order and its primary key (a prefix-free subset of columns)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def ddl(self) -> str:
        cols = ", ".join(f"{c.name} {c.sql}{'' if c.nullable else ' NOT NULL'}" for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}, PRIMARY KEY ({', '.join(self.key)}))"


_T, _I, _R = "TEXT", "INTEGER", "REAL"

RESULTS = TableSpec("results", (
    Column("model", _T), Column("dataset", _T), Column("case_id", _T), Column("method", _T),
    Column("selector", _T), Column("layer", _I), Column("metric", _T), Column("value", _R),
    Column("pre", _R, nullable=True), Column("seconds", _R), Column("split", _T), Column("created_at", _T),
), key=("model", "dataset", "case_id", "method", "selector", "layer", "metric"))

SELECTORS = TableSpec("selectors", (
    Column("selector", _T), Column("dataset", _T), Column("model", _T), Column("layer", _I), Column("score", _R),
    Column("cases", _I), Column("seconds", _R), Column("created_at", _T),
), key=("selector", "dataset", "model", "layer"))

FAILURES = TableSpec("failures", (
    Column("model", _T), Column("dataset", _T), Column("case_id", _T), Column("method", _T), Column("layer", _I),
    Column("stage", _T), Column("reason", _T), Column("created_at", _T),
), key=("model", "dataset", "case_id", "method", "layer", "stage"))

TABLES = {t.name: t for t in (RESULTS, SELECTORS, FAILURES)}


class RowError(ValueError):
    """A row that does not fit the schema; the message names the table, the case (when known) and the field."""


def now() -> str:
    """UTC timestamp in ISO 8601, the `created_at` of new rows."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _where(table: TableSpec, row: Mapping) -> str:
    case = row.get("case_id")
    return f"{table.name} row" + (f" of case {case!r}" if case is not None else "")


def normalise_row(table: TableSpec, row: Mapping) -> tuple:
    """The row as a tuple in column order, with types checked: text fields non-empty strings, layer an int,
    value/score finite floats, metric canonical, split proxy|test; created_at filled with now() when absent,
    seconds with 0.0, pre with None. Unknown fields are errors (a typo would otherwise vanish silently)."""
    extra = set(row) - set(table.names)
    if extra:
        raise RowError(f"{_where(table, row)}: unknown field(s) {sorted(extra)}; columns are {list(table.names)}")
    out = []
    for col in table.columns:
        v = row.get(col.name)
        if v is None and col.name == "created_at":
            v = now()
        elif v is None and col.name == "seconds":
            v = 0.0
        if v is None:
            if col.nullable:
                out.append(None)
                continue
            raise RowError(f"{_where(table, row)}: field {col.name!r} is missing")
        try:
            if col.sql == _T:
                v = str(v)
                if not v:
                    raise ValueError("empty string")
            elif col.sql == _I:
                if isinstance(v, float) and not v.is_integer():
                    raise ValueError(f"{v} is not an integer")
                v = int(v)
            else:
                v = float(v)
                if not math.isfinite(v):
                    raise ValueError(f"{v} is not finite")
        except (TypeError, ValueError) as e:
            raise RowError(f"{_where(table, row)}: field {col.name!r} = {row.get(col.name)!r}: {e}") from None
        out.append(v)
    rec = dict(zip(table.names, out, strict=True))
    if "metric" in rec and rec["metric"] not in STORED_METRICS:
        raise RowError(f"{_where(table, row)}: field 'metric' = {rec['metric']!r} is not a canonical metric "
                       f"({', '.join(STORED_METRICS)})")
    if "split" in rec and rec["split"] not in SPLITS:
        raise RowError(f"{_where(table, row)}: field 'split' = {rec['split']!r} must be one of {SPLITS}")
    return tuple(out)
