"""The cell loop: edit a batch of cases at a layer, score, restore bitwise, record rows or failures, resume
(paper section 4; docs/golden.md "The cell loop").

Every experiment of the package goes through `edit_cells`: `evaluate()` (one or a few layers), brute force (every
case at every layer; `goldenlayers.selection.bruteforce`), `compare`, the demo and the run engine
(`goldenlayers.runs.engine_jobs`). It works through injected callables, so it knows nothing of a particular editor
or evaluator:
- `prepare_fn(cases, layer) -> list` (one item per case, or an Exception for a case that cannot be edited) does the
  expensive shared work of a batch, e.g. the v* optimisation of several cases in one forward; `apply_fn(item)`
  applies one case's edit and returns a handle with `.restore()`. `edit_fn(case, layer) -> handle` is the
  unbatched form. `MethodEditor` gives both for an editing method of goldenlayers.editing (v* batched).
- `pre_fn(case)` (optional) computes what scoring needs from the UNEDITED model (e.g. locality predictions); it
  runs once per case, lazily, when every earlier edit has been restored.
- `score_fn(case, pre) -> {metric: value}`: the metrics of that case on the currently edited model; a value is a
  float (post-edit) or a pair (pre-edit value or None, post-edit value).
- `score_batch_fn(cases, pres, edits)` (optional; SweepFns and `evaluate` give CaseScorer.score_batch) scores a
  batch of cells together, each under its own edit ({(layer, site): dW}, read off the handle's WeightDelta, whose
  weights are restored at once): docs/evaluation.md "Scoring many edits in one forward". `pre_batch_fn(cases)`
  (optional) fills pre_fn's cache for a batch's cases together.
The loop goes layer-major (per-layer statistics of the editor are reused), in batches of `batch_size` cases,
restores the weights after every case (even when scoring raises), records failures (`EvalFailure`: case, layer,
stage, reason) and goes on, skips (case_id, layer) keys in `skip` (resume), and hands every finished (case, layer)
to `on_cell(Cell)` at the end of its batch so a run store can persist it (a crash loses at most one batch). With
`weights_fn(layer) -> [tensors]` it checks that those tensors are bitwise what they were before the case and
raises `WeightsNotRestoredError` if not (a corrupted model would spoil every later row; an exception from
`restore()` stops it too). seconds of a cell = the batch's wall time (prepare, every apply and score) / its
cells, wherever the editor does the shared work. layer None means the editor's default layer (the rows then carry
the layer the handle reports in `.layers`, and no weight is watched).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.result import EvalFailure, EvalRow

Key = tuple[str, int | None]  # (case_id, layer)
MAX_DEFERRED_BYTES = 2 << 30  # edits waiting to be scored together: scored early beyond this many bytes


class WeightsNotRestoredError(RuntimeError):
    """An edit was not undone bitwise; the loop stops because every later result would be wrong."""


@dataclass
class Cell:
    """One finished (case, layer): its metric rows or its failure."""

    case_id: str
    dataset: str
    layer: int | None
    seconds: float
    rows: list[EvalRow] = field(default_factory=list)
    failure: EvalFailure | None = None

    @property
    def key(self) -> Key:
        return (self.case_id, self.layer)


@dataclass
class CellResult:
    rows: list[EvalRow] = field(default_factory=list)
    failures: list[EvalFailure] = field(default_factory=list)
    skipped: int = 0  # keys found in `skip`
    seconds: float = 0.0

    def records(self) -> list[dict]:
        """The rows as long records (case_id, dataset, layer, metric, value, pre, seconds, method)."""
        return [r.record() for r in self.rows]


def _prepare_each(prepare_fn, chunk: list[EditCase], layer) -> list:
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


def _scores(raw, case: EditCase) -> dict[str, tuple[float | None, float]]:
    if not isinstance(raw, Mapping) or not raw:
        raise TypeError(f"score_fn must return a non-empty {{metric: value}} dict, got {type(raw).__name__}")
    out = {}
    for k, v in raw.items():
        pre, post = v if isinstance(v, tuple) else (None, v)
        out[str(k)] = (None if pre is None else float(pre), float(post))
    bad = [k for k, (_, v) in out.items() if not np.isfinite(v)]
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

    def fill(self, pre_batch_fn, cases: list[EditCase]) -> None:
        """Let pre_batch_fn compute the pre-edit values of the cases not seen yet together (errors: per case later)."""
        fresh = [c for c in cases if c.case_id not in self.cache]
        if pre_batch_fn is None or self.pre_fn is None or not fresh:
            return
        try:
            pre_batch_fn(fresh)
        except Exception:
            pass


def _edited_layer(handle, layer: int | None) -> int | None:
    if layer is not None:
        return layer
    layers = getattr(handle, "layers", None)
    return layers[0] if isinstance(layers, list) and len(layers) == 1 else None


@dataclass
class _Deferred:
    """An applied-and-restored edit whose scoring waits for the batch's `score_batch_fn`."""

    case: EditCase
    at: int | None
    pre: object
    edit: dict


def _edit_of(handle) -> dict | None:
    """The changes {(layer, site): dW} an applied edit handle records (a WeightDelta's `updates`, float64), kept in
    the edited weight's dtype but at least float32 (half the memory of float64 for a float32 model, no precision
    lost for a float64 one); None when it records none (the cell is then scored on the edited weights)."""
    delta = getattr(handle, "delta", None)
    updates, originals = getattr(delta, "updates", None), getattr(delta, "originals", None)
    if not isinstance(updates, Mapping) or not updates or not isinstance(originals, Mapping):
        return None
    return {k: v.to(torch.promote_types(originals[k].dtype, torch.float32)) if k in originals else v
            for k, v in updates.items()}


def _one(case, layer, item, apply_fn, score_fn, pre: _Pre, guard, method, defer: bool = False):
    """Apply, score, restore one cell -> (rows, failure); with `defer`, an edit whose changes the handle records
    is restored at once and returned as a _Deferred in place of rows (scored later with its batch)."""
    def fail(stage, e, at=layer):
        return [], EvalFailure.of(case, method, at, stage, e)

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
    if not callable(getattr(handle, "restore", None)):
        raise TypeError(f"the editor returned {type(handle).__name__}, which has no restore(); the model stays "
                        f"edited by case {case.case_id!r}")
    at = _edited_layer(handle, layer)
    edit = _edit_of(handle) if defer else None
    if edit is not None:
        handle.restore()
        guard(case, layer)
        return _Deferred(case, at, cache, edit), None
    try:
        scores = _scores(score_fn(case, cache), case)
    except Exception as e:
        return fail("score", e, at)
    finally:
        handle.restore()
        guard(case, layer)
    return _rows(case, scores, at, method), None


def _rows(case, scores, at, method) -> list[EvalRow]:
    return [EvalRow(case.case_id, case.dataset, m, pre_v, post_v, at, method) for m, (pre_v, post_v) in
            scores.items()]


def _score_deferred(score_batch_fn, finished: list, method: str) -> None:
    """Score every _Deferred cell of `finished` (entries [case, layer, rows, failure]) in one score_batch_fn call
    and put its rows or failure in place."""
    waiting = [entry for entry in finished if isinstance(entry[2], _Deferred)]
    if not waiting:
        return
    cells = [entry[2] for entry in waiting]
    try:
        raw = list(score_batch_fn([d.case for d in cells], [d.pre for d in cells], [d.edit for d in cells]))
        if len(raw) != len(cells):
            raise RuntimeError(f"score_batch_fn returned {len(raw)} results for {len(cells)} cells")
    except Exception as e:
        raw = [e] * len(cells)
    for entry, d, r in zip(waiting, cells, raw):
        try:
            if isinstance(r, Exception):
                raise r
            entry[2], entry[3] = _rows(d.case, _scores(r, d.case), d.at, method), None
        except Exception as e:
            entry[2], entry[3] = [], EvalFailure.of(d.case, method, d.at, "score", e)


def _guard(weights_fn, layer):
    if weights_fn is None or layer is None:
        return lambda case, layer: None
    watched = [(w, w.detach().clone()) for w in weights_fn(layer)]

    def check(case, layer):
        for w, orig in watched:
            if not torch.equal(w.detach(), orig):
                raise WeightsNotRestoredError(f"case {case.case_id!r} at layer {layer}: weights differ after "
                                              "restore(); the editor's undo is not exact")
    return check


def _prepare_grid(prepare_fn, prepare_grid_fn, chunk: list[EditCase], group: list) -> dict:
    """{layer: items} for the chunk at every layer of the group: one prepare_grid_fn call (the v* of every pair in
    one batch) when given and the group has several layers; else (or if it fails) layer by layer."""
    if prepare_grid_fn is not None and len(group) > 1:
        try:
            items = prepare_grid_fn(chunk, group)
            if all(len(items.get(layer, ())) == len(chunk) for layer in group):
                return items
        except Exception:
            pass
    return {layer: _prepare_each(prepare_fn, chunk, layer) for layer in group}


def edit_cells(cases: Sequence[EditCase], layers: Iterable[int | None], score_fn: Callable, *,
               edit_fn: Callable | None = None, prepare_fn: Callable | None = None, apply_fn: Callable | None = None,
               prepare_grid_fn: Callable | None = None, layer_batch: int = 1,
               pre_fn: Callable | None = None, weights_fn: Callable | None = None, batch_size: int = 16,
               score_batch_fn: Callable | None = None, pre_batch_fn: Callable | None = None,
               on_cell: Callable[[Cell], None] | None = None, skip: Iterable[Key] = (), progress: bool = True,
               desc: str = "edit", method: str = "-") -> CellResult:
    """Edit each case at each layer, score it, restore; see the module docstring. Returns all rows and failures
    (rows and failures carry `method`). With `prepare_grid_fn(cases, layers) -> {layer: items}` and
    `layer_batch` > 1, the layers go in groups of `layer_batch` and a batch prepares its cases at every layer of
    the group at once (the v* of all those (case, layer) pairs in one optimisation); the cells are the same.
    With `score_batch_fn(cases, pres, edits) -> [{metric: value} or Exception]`, each cell's edit is applied,
    its changes {(layer, site): dW} read from the handle's `delta.updates` and restored at once, and the batch's
    cells are then scored together (each under its own edit, e.g. CaseScorer.states with per-row edits); a
    handle that records no changes is scored on the edited weights by score_fn as before.
    `pre_batch_fn(cases)`, if given, runs once per batch on its cases whose pre-edit values are not cached yet, so
    that pre_fn can answer from a cache it filled in cross-case batches (CaseScorer.prepare); its errors are left
    to pre_fn, case by case."""
    batched = prepare_fn is not None and apply_fn is not None
    if (edit_fn is not None) == batched or (prepare_fn is None) != (apply_fn is None):
        raise ValueError("pass either edit_fn, or both prepare_fn and apply_fn")
    if edit_fn is not None:
        prepare_fn, apply_fn = (lambda cs, layer: [(c, layer) for c in cs]), (lambda item: edit_fn(*item))
    if batch_size < 1 or layer_batch < 1:
        raise ValueError(f"batch_size and layer_batch must be >= 1, got {batch_size} and {layer_batch}")
    cases, layers = list(cases), [None if layer is None else int(layer) for layer in layers]
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError(f"case ids must be unique; repeated: {sorted({i for i in ids if ids.count(i) > 1})}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers repeat: {layers}")
    done = {(str(c), None if layer is None else int(layer)) for c, layer in skip}
    result, pre, t_start = CellResult(), _Pre(pre_fn), time.perf_counter()
    todo = {layer: {c.case_id for c in cases if (c.case_id, layer) not in done} for layer in layers}
    total = sum(len(t) for t in todo.values())
    result.skipped = len(cases) * len(layers) - total
    grid = prepare_grid_fn is not None and layer_batch > 1 and None not in layers
    size = layer_batch if grid else 1
    with tqdm(total=total, disable=not progress, desc=desc, unit="edit") as bar:
        for g in range(0, len(layers), size):
            group = layers[g:g + size]
            guards = {layer: _guard(weights_fn, layer) for layer in group if todo[layer]}
            wanted = [c for c in cases if any(c.case_id in todo[layer] for layer in group)]
            for start in range(0, len(wanted), batch_size):
                chunk = wanted[start:start + batch_size]
                t0 = time.perf_counter()
                pre.fill(pre_batch_fn, chunk)
                items = _prepare_grid(prepare_fn, prepare_grid_fn if grid else None, chunk, group)
                finished, waiting_bytes = [], 0
                for layer in group:
                    for case, item in zip(chunk, items[layer], strict=True):
                        if case.case_id in todo[layer]:
                            finished.append([case, layer, *_one(case, layer, item, apply_fn, score_fn, pre,
                                                                guards[layer], method, score_batch_fn is not None)])
                            if isinstance(finished[-1][2], _Deferred):
                                waiting_bytes += sum(t.numel() * t.element_size()
                                                     for t in finished[-1][2].edit.values())
                            if waiting_bytes > MAX_DEFERRED_BYTES:  # bound the memory the waiting edits hold
                                _score_deferred(score_batch_fn, finished, method)
                                waiting_bytes = 0
                            bar.update()
                _score_deferred(score_batch_fn, finished, method)
                # a batched editor does the shared work (v* of every case) in prepare or in the first apply,
                # so every cell of the batch gets the batch's mean time; cells are handed on per batch
                seconds = (time.perf_counter() - t0) / max(1, len(finished))
                for case, layer, rows, failure in finished:
                    rows = [r.timed(seconds) for r in rows]
                    result.rows += rows
                    if failure is not None:
                        result.failures.append(failure)
                    if on_cell is not None:
                        on_cell(Cell(case.case_id, case.dataset, layer, seconds, rows, failure))
    result.seconds = time.perf_counter() - t_start
    return result


class _Batch:
    """One prepared batch for a method: at its first apply it optimises the v* of all its cases together, at one
    layer (`edit_each`) or at each of several layers (`edit_grid`), and then yields the edits in order (an edit
    that the loop does not ask for, a cell done before a resume, is restored and passed over). Cases whose data
    the method refuses (`refused_cases`) are left out of the batch and edited alone, where they fail with their
    own error; if the batch itself fails (a failed update), its remaining cells are edited one by one with `edit`."""

    def __init__(self, cases: list[EditCase], layers: list[int | None], edit_kw: dict):
        self.cases, self.layers, self.kw = cases, layers, edit_kw
        self.gen, self.alone, self.broken = None, None, False

    def _start(self) -> None:
        from goldenlayers.editing import (  # lazily: evaluation needs no editors
            edit_each,
            edit_grid,
            refused_cases,
        )

        kw = {k: v for k, v in self.kw.items() if k in ("model", "tok", "method", "hparams", "name")}
        self.alone = set(refused_cases(cases=self.cases, **kw))
        batch = [c for c in self.cases if c.case_id not in self.alone]
        if not batch:
            self.gen = iter(())
        elif len(self.layers) == 1:
            self.gen = edit_each(cases=batch, layer=self.layers[0], batch_size=len(batch), **self.kw)
        else:
            self.gen = edit_grid(cases=batch, layers=self.layers, **self.kw)

    def apply(self, case: EditCase, layer: int | None):
        from goldenlayers.editing import edit

        if not self.broken:
            try:
                if self.gen is None:
                    self._start()
                if case.case_id not in self.alone:
                    for result in self.gen:
                        if result.diagnostics[0].case_id == case.case_id and \
                                (layer is None or result.layers == [layer]):
                            return result
                        result.restore()  # a cell the loop does not ask for
                    raise RuntimeError(f"the batch has no edit of case {case.case_id!r} at layer {layer}")
            except Exception:
                self.broken = True
        return edit(cases=[case], layer=layer, **self.kw)


class MethodEditor:
    """An editing method of goldenlayers.editing as the cell loop's editor: `prepare_fn`/`apply_fn` edit a batch of
    cases with their v* optimised together; `weights_fn(layer)` is the tensor the method edits (watched for a
    bitwise restore). hparams: settings or overrides of the model's preset; stats: {layer: C} (None: C = I)."""

    def __init__(self, model, tok, method: str = "r-rome", hparams=None, *, stats=None, name: str | None = None):
        from goldenlayers.models.adapters import get_adapter

        self.model, self.method = model, method
        self.adapter = get_adapter(model)
        self.kw = dict(model=model, tok=tok, method=method, hparams=hparams, stats=stats, adapter=self.adapter,
                       name=name)

    def prepare_fn(self, cases, layer):
        batch = _Batch(list(cases), [layer], self.kw)
        return [(batch, case, layer) for case in cases]

    def _grid(self, cases, layers):
        batch = _Batch(list(cases), list(layers), self.kw)
        return {layer: [(batch, case, layer) for case in cases] for layer in layers}

    @property
    def prepare_grid_fn(self):
        """(cases, layers) -> {layer: items}: the cases at every layer, their v* optimised in one batch
        (`edit_grid`); None for a method that edits a range of layers at once (MEMIT)."""
        from goldenlayers.editing import get_method

        return None if get_method(self.method).multi_layer else self._grid

    @staticmethod
    def apply_fn(item):
        batch, case, layer = item
        return batch.apply(case, layer)

    def weights_fn(self, layer: int) -> list[torch.Tensor]:
        """The weights the method edits at `layer` (its `weight_site`: the down-projection unless it says otherwise)."""
        from goldenlayers.editing import get_method

        return [self.adapter.site_param(self.model, layer, get_method(self.method).weight_site)]

    def kwargs(self) -> dict:
        return dict(prepare_fn=self.prepare_fn, apply_fn=self.apply_fn, prepare_grid_fn=self.prepare_grid_fn,
                    weights_fn=self.weights_fn, method=self.method)
