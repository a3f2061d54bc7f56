"""Brute force (BF): edit every case at every layer, score every metric (REFERENCE.md section 2; paper section 4,
the ground truth behind Tables 1 and 3-8 and the baseline of Figure 4).

`sweep` works through injected callables, so it knows nothing of a particular editor or evaluator:
- `prepare_fn(cases, layer) -> list` (one item per case, or an Exception for a case that cannot be edited) does the
  expensive shared work of a batch, e.g. the v* optimisation of several cases in one forward; `apply_fn(item)`
  applies one case's edit and returns a handle with `.restore()`. `edit_fn(case, layer) -> handle` is the
  unbatched form.
- `pre_fn(case)` (optional) computes what scoring needs from the UNEDITED model (e.g. locality predictions); it
  runs once per case, lazily, when every earlier edit has been restored.
- `score_fn(case, pre) -> {metric: float}`: post-edit metrics of that case on the currently edited model.
The sweep goes layer-major (per-layer statistics of the editor are reused), in batches of `batch_size` cases,
restores the weights after every case (even when scoring raises), records failures (case, layer, stage,
reason) and goes on, skips (case_id, layer) keys in `skip` (resume), and hands every finished (case, layer) to
`on_row(cell)` at the end of its batch so a run store can persist it (a crash loses at most one batch). With `weights_fn(layer) -> [tensors]` it also checks
that those tensors are bitwise what they were before the case, and stops the sweep if not (a corrupted model
would spoil every later row; an exception from `restore()` stops it too). seconds of a cell = the
batch's wall time (prepare, every apply and score) / its cells, wherever the editor does the shared work.
`bruteforce_scores(rows, metric)` turns the rows into the common LayerScores table (selector "bruteforce").
`make_default_fns` (goldenlayers.selection.sweep_fns, re-exported here) wires the real editor and evaluator in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from goldenlayers.cases import EditCase
from goldenlayers.selection.golden import ScoreMatrix
from goldenlayers.selection.sweep_fns import SWEEP_METRICS, SweepFns, make_default_fns
from goldenlayers.selection.table import LayerScores, dataset_label

Key = tuple[str, int]  # (case_id, layer)


class WeightsNotRestoredError(RuntimeError):
    """An edit was not undone bitwise; the sweep stops because every later result would be wrong."""


@dataclass(frozen=True)
class Failure:
    """A (case, layer) that produced no rows. stage: prepare | pre | edit | score."""

    case_id: str
    dataset: str
    layer: int
    stage: str
    reason: str

    def row(self) -> dict:
        return dict(case_id=self.case_id, dataset=self.dataset, layer=self.layer, stage=self.stage,
                    reason=self.reason)


@dataclass
class Cell:
    """One finished (case, layer): its metric rows (case_id, dataset, layer, metric, value, seconds) or a failure."""

    case_id: str
    dataset: str
    layer: int
    seconds: float
    rows: list[dict] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def key(self) -> Key:
        return (self.case_id, self.layer)


@dataclass
class SweepResult:
    rows: list[dict] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    skipped: int = 0  # keys found in `skip`
    seconds: float = 0.0


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _prepare_each(prepare_fn, chunk: list[EditCase], layer: int) -> list:
    """prepare_fn on the chunk; if the batch as a whole fails, case by case so one bad case fails alone."""
    try:
        items = list(prepare_fn(chunk, layer))
        if len(items) != len(chunk):
            raise RuntimeError(f"prepare_fn returned {len(items)} items for {len(chunk)} cases")
        return items
    except Exception as e:
        if len(chunk) == 1:
            return [e]
    out = []
    for case in chunk:
        out += _prepare_each(prepare_fn, [case], layer)
    return out


def _scores(raw, case: EditCase) -> dict[str, float]:
    if not isinstance(raw, Mapping) or not raw:
        raise TypeError(f"score_fn must return a non-empty {{metric: float}} dict, got {type(raw).__name__}")
    out = {str(k): float(v) for k, v in raw.items()}
    bad = [k for k, v in out.items() if not np.isfinite(v)]
    if bad:
        raise ValueError(f"case {case.case_id!r}: metric(s) {bad} are not finite")
    return out


class _Pre:
    """Lazy, once-per-case pre-edit cache (an exception is cached too, and reported at every layer)."""

    def __init__(self, pre_fn):
        self.pre_fn, self.cache = pre_fn, {}

    def __call__(self, case: EditCase):
        if self.pre_fn is None:
            return None
        if case.case_id not in self.cache:
            try:
                self.cache[case.case_id] = self.pre_fn(case)
            except Exception as e:
                self.cache[case.case_id] = e
        value = self.cache[case.case_id]
        if isinstance(value, Exception):
            raise value
        return value


def _one(case, layer, item, apply_fn, score_fn, pre: _Pre, guard) -> tuple[list[dict], Failure | None]:
    def fail(stage, e):
        return [], Failure(case.case_id, case.dataset, layer, stage, _reason(e))

    if isinstance(item, Exception):
        return fail("prepare", item)
    try:
        cache = pre(case)
    except Exception as e:
        return fail("pre", e)
    try:
        handle = apply_fn(item)
    except Exception as e:
        guard(case, layer)
        return fail("edit", e)
    try:
        scores = _scores(score_fn(case, cache), case)
    except Exception as e:
        return fail("score", e)
    finally:
        handle.restore()
        guard(case, layer)
    return [dict(case_id=case.case_id, dataset=case.dataset, layer=layer, metric=m, value=v)
            for m, v in scores.items()], None


def _guard(weights_fn, layer):
    if weights_fn is None:
        return lambda case, layer: None
    watched = [(w, w.detach().clone()) for w in weights_fn(layer)]

    def check(case, layer):
        for w, orig in watched:
            if not torch.equal(w.detach(), orig):
                raise WeightsNotRestoredError(f"case {case.case_id!r} at layer {layer}: weights differ after "
                                              "restore(); the editor's undo is not exact")
    return check


def sweep(cases: Sequence[EditCase], layers: Iterable[int], score_fn: Callable, *, edit_fn: Callable | None = None,
          prepare_fn: Callable | None = None, apply_fn: Callable | None = None, pre_fn: Callable | None = None,
          weights_fn: Callable | None = None, batch_size: int = 16, on_row: Callable[[Cell], None] | None = None,
          skip: Iterable[Key] = (), progress: bool = True, desc: str = "brute force") -> SweepResult:
    """Edit each case at each layer, score it, restore; see the module docstring. Returns all rows and failures."""
    batched = prepare_fn is not None and apply_fn is not None
    if (edit_fn is not None) == batched or (prepare_fn is None) != (apply_fn is None):
        raise ValueError("pass either edit_fn, or both prepare_fn and apply_fn")
    if edit_fn is not None:
        prepare_fn, apply_fn = (lambda cs, layer: [(c, layer) for c in cs]), (lambda item: edit_fn(*item))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cases, layers = list(cases), [int(layer) for layer in layers]
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError(f"case ids must be unique; repeated: {sorted({i for i in ids if ids.count(i) > 1})}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers repeat: {layers}")
    done = {(str(c), int(layer)) for c, layer in skip}
    result, pre, t_start = SweepResult(), _Pre(pre_fn), time.perf_counter()
    todo = {layer: [c for c in cases if (c.case_id, layer) not in done] for layer in layers}
    result.skipped = len(cases) * len(layers) - sum(len(t) for t in todo.values())
    with tqdm(total=sum(len(t) for t in todo.values()), disable=not progress, desc=desc,
              unit="edit") as bar:
        for layer in layers:
            guard = _guard(weights_fn, layer) if todo[layer] else None
            for start in range(0, len(todo[layer]), batch_size):
                chunk = todo[layer][start:start + batch_size]
                t0 = time.perf_counter()
                items = _prepare_each(prepare_fn, chunk, layer)
                done_here = []
                for case, item in zip(chunk, items, strict=True):
                    done_here.append((case, *_one(case, layer, item, apply_fn, score_fn, pre, guard)))
                    bar.update()
                # a batched editor does the shared work (v* of every case) in prepare or in the first apply,
                # so every cell of the batch gets the batch's mean time; cells are handed on per batch
                seconds = (time.perf_counter() - t0) / len(chunk)
                for case, rows, failure in done_here:
                    for r in rows:
                        r["seconds"] = seconds
                    result.rows += rows
                    if failure is not None:
                        result.failures.append(failure)
                    if on_row is not None:
                        on_row(Cell(case.case_id, case.dataset, layer, seconds, rows, failure))
    result.seconds = time.perf_counter() - t_start
    return result


def bruteforce_scores(rows: Iterable[Mapping], metric: str, *, model: str = "-", higher_is_better: bool | None = None,
                      selector: str = "bruteforce", overall_spec=None) -> LayerScores:
    """The LayerScores table of one metric: per-case matrix (cases with a value at every layer; the others in
    `skipped`), scores = layer means (negated when lower is better, so higher is better as in every table;
    direction from goldenlayers.selection.golden.higher_is_better unless given), seconds = the summed seconds of
    the distinct (case, layer) cells in `rows`. metric "overall": scores = the Overall of each layer's metric
    means (golden.overall_curve, `overall_spec`), no per-case matrix. The metric goes to `meta`; pass e.g.
    selector=f"bruteforce-{metric}" to store tables of several metrics side by side."""
    from goldenlayers.selection.golden import OVERALL, layer_means, overall_curve
    from goldenlayers.selection.golden import higher_is_better as direction

    rows = list(rows)
    seconds = sum({(str(r["case_id"]), int(r["layer"])): float(r.get("seconds", 0.0)) for r in rows}.values())
    datasets = dataset_label(r.get("dataset", "-") for r in rows)
    if metric == OVERALL:
        names = list(dict.fromkeys(r["metric"] for r in rows))
        matrices = {m: ScoreMatrix.from_rows(rows, m, dataset=datasets, model=model) for m in names}
        layers, means = layer_means(matrices)
        return LayerScores(selector, datasets, model, layers, overall_curve(means, overall_spec),
                           cases=max(len(m.case_ids) for m in matrices.values()), seconds=seconds,
                           meta=dict(metric=metric, higher_is_better=True, metrics=names))
    rows = [r for r in rows if r["metric"] == metric]
    m = ScoreMatrix.from_rows(rows, metric, dataset=datasets, model=model)
    higher_is_better = direction(metric) if higher_is_better is None else higher_is_better
    sign = 1.0 if higher_is_better else -1.0
    return LayerScores.from_per_case(selector, datasets, model, m.layers, sign * m.values, m.case_ids,
                                     seconds=seconds, skipped=dict(m.dropped),
                                     meta=dict(metric=metric, higher_is_better=higher_is_better))


__all__ = ["SWEEP_METRICS", "SweepFns", "bruteforce_scores", "make_default_fns", "sweep"]
