"""`select_layer` (one selector, one case set) and `compare_selectors` (the paper's Table 2 experiment).

select_layer runs LGA (section 5 of the paper; Tukey-fence pick), CMA (ROME's causal tracing; argmax of the mean
indirect effect of the MLP at the last subject token) or brute force (edit every case at every layer; the golden
layer of `metric`) and returns the common LayerScores table with the chosen layer.
compare_selectors finds each selector's layer on a proxy set, edits the test set at that layer, and returns one
row per (editing method, selector) with rewrite, rephrase, locality, portability, fluency and Overall (the fixed
per-row score of goldenlayers.evaluation.overall), plus each selector's wall time and its ratio to brute force.
With `truth=True` it also sweeps every layer on the TEST set (the ground truth): each row's metrics then come from
that sweep at the chosen layer, and the row gains its regret (Overall and per metric), Spearman's rho of the
selector's layer scores with the per-layer test Overall, and its cost as a fraction of the sweep's time
(goldenlayers.selection.regret). `on_selection(Selection)` and `on_row(dict)` are called as soon as each is known,
so a caller can print partial results before the slow parts finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.overall import OverallSpec, overall, overall_note
from goldenlayers.selection.lga import LGA_VARIANTS
from goldenlayers.selection.pick import LayerPick, pick_layer
from goldenlayers.selection.regret import GroundTruth, score_selector
from goldenlayers.selection.table import LayerScores

SELECTORS = ("race", *LGA_VARIANTS, "cma", "bruteforce")  # race (selection/race.py) is the default


@dataclass
class Selection:
    """A selector's table and its chosen layer (`pick` holds the Tukey fences for LGA; None otherwise)."""

    selector: str
    table: LayerScores
    layer: int
    seconds: float
    pick: LayerPick | None = None


def select_layer(model, tok, cases: Sequence[EditCase], method: str = "race", editor: str = "r-rome",
                 hparams=None, layers: Sequence[int] | None = None, metric: str = "rewrite", tukey_k: float = 1.5,
                 cma_window: int = 10, batch_size: int = 16, progress: bool = True, model_name: str | None = None,
                 metrics: Sequence[str] | None = None, overall_spec=None, stats=None, **selector_kw) -> Selection:
    """Score every layer with `method` (one of SELECTORS: "race", an LGA reading of LGA_VARIANTS, "cma",
    "bruteforce") on `cases` and choose one. The race edits with `editor` like brute force. Brute force
    measures `metrics` (default: the sweep's, without fluency) and picks the golden layer of `metric`
    ("overall": of the Overall of the layer means, with `overall_spec`); hparams and key statistics `stats`
    ({layer: C}, None for C = I) are its editor's."""
    cases = list(cases)
    if not cases:
        raise ValueError("select_layer needs at least one case")
    start = time.perf_counter()
    layers = list(layers) if layers is not None else None
    if method in LGA_VARIANTS:
        from goldenlayers.selection.lga import lga_scores

        kw = {**LGA_VARIANTS[method], **selector_kw}
        k = kw.pop("tukey_k", tukey_k)  # None: no fences, the plain argmax
        table = lga_scores(model, tok, cases, layers=layers, batch_size=batch_size, progress=progress,
                           model_name=model_name, **kw)
        pick = pick_layer(table, k=k) if k is not None else None
        return Selection(method, table, pick.layer if pick else table.best(), time.perf_counter() - start, pick)
    if method == "race":
        from goldenlayers.selection.race import race_scores

        table = race_scores(model, tok, cases, editor=editor, hparams=hparams, stats=stats, layers=layers,
                            overall_spec=overall_spec, batch_size=batch_size, progress=progress,
                            model_name=model_name, **selector_kw)
        return Selection("race", table, table.meta["chosen"], time.perf_counter() - start)
    if method == "cma":
        from goldenlayers.selection.cma import cma_scores

        table = cma_scores(model, tok, cases, window=cma_window, layers=layers, progress=progress,
                           model_name=model_name, **selector_kw)
        if not table.cases:
            raise ValueError("CMA kept no case: the model answers none of them correctly (known-fact filter)")
        return Selection("cma", table, table.best(), time.perf_counter() - start)
    if method == "bruteforce":
        from goldenlayers.evaluation.cells import edit_cells
        from goldenlayers.models.adapters import get_adapter
        from goldenlayers.selection.bruteforce import bruteforce_scores, make_default_fns

        n = get_adapter(model).n_layers(model)
        fns = make_default_fns(model, tok, editor, hparams, stats=stats, name=model_name, metrics=metrics)
        res = edit_cells(cases, layers if layers is not None else range(n), progress=progress, batch_size=batch_size,
                         desc="brute force", **fns.kwargs(), **selector_kw)
        if not res.rows:
            raise ValueError(f"brute force produced no result; failures: {[f.reason for f in res.failures[:3]]}")
        table = bruteforce_scores(res.rows, metric, model=model_name or "-", overall_spec=overall_spec)
        table.seconds = time.perf_counter() - start
        table.meta["failures"] = len(res.failures)
        return Selection("bruteforce", table, table.best(), table.seconds)
    raise ValueError(f"unknown selector {method!r}; choose one of {', '.join(SELECTORS)}")


@dataclass
class Comparison:
    """Rows of the Table-2-shaped comparison, the selections behind them, the definition of Overall used, and the
    test-set ground truth (None without `truth=True`)."""

    rows: list[dict]
    selections: dict[str, Selection] = field(default_factory=dict)
    normalisation: str = ""
    truth: GroundTruth | None = None


def compare_selectors(model, tok, proxy: Sequence[EditCase], test: Sequence[EditCase], editor: str = "r-rome",
                      hparams=None, selectors: Sequence[str] = SELECTORS, metric: str = "overall",
                      fluency: bool = True, batch_size: int = 16, progress: bool = True,
                      model_name: str | None = None, selector_kw: dict | None = None, truth: bool = False,
                      overall_spec: OverallSpec | None = None, on_selection: Callable[[Selection], None] | None = None,
                      on_row: Callable[[dict], None] | None = None, stats=None) -> Comparison:
    """Select a layer with each selector on `proxy`, edit `test` at it with `editor`, and compare (Table 2);
    brute force picks the proxy golden layer of `metric`. See the module docstring for `truth` and the callbacks.
    hparams and key statistics `stats` ({layer: C}, None for C = I) are the editor's, in the selection, the ground
    truth and the evaluation alike."""
    from goldenlayers.evaluation.scorer import PreCache
    from goldenlayers.selection.sweep_fns import SWEEP_METRICS

    selector_kw = selector_kw or {}
    metrics = (*SWEEP_METRICS, "fluency") if fluency else SWEEP_METRICS
    selections = {}
    for s in selectors:
        selections[s] = select_layer(model, tok, proxy, s, editor=editor, hparams=hparams, metric=metric,
                                     batch_size=batch_size, progress=progress, model_name=model_name,
                                     metrics=metrics, overall_spec=overall_spec, stats=stats,
                                     **selector_kw.get(s, {}))
        if on_selection is not None:
            on_selection(selections[s])
    bf = selections.get("bruteforce")
    rows = []

    def finish(row: dict) -> None:
        row["speedup_vs_bruteforce"] = bf.seconds / row["seconds"] if bf and row["seconds"] > 0 else None
        row["overall"] = overall(row, overall_spec)
        rows.append(row)
        if on_row is not None:
            on_row(row)

    if truth:
        ground = _ground_truth(model, tok, test, editor, hparams, metrics, batch_size, progress, model_name,
                               overall_spec, stats)
        for name, sel in selections.items():
            row = dict(method=editor, selector=name, layer=sel.layer, cases=ground.truth.cases,
                       failures=ground.failures.get(sel.layer, 0), seconds=sel.seconds)
            if sel.layer in ground.truth.layers:  # else every test case failed there: no metrics, no regret
                score = score_selector(name, sel.layer, ground.truth, sel.seconds, sel.table.layers,
                                       sel.table.scores)
                row.update({k: v for k, v in score.row().items() if k not in ("selector", "layer", "seconds")})
            finish(row)
        return Comparison(rows, selections, overall_note(list(ground.truth.means), overall_spec), ground.truth)
    from goldenlayers.evaluation.cells import edit_cells
    from goldenlayers.evaluation.result import EvalResult
    from goldenlayers.selection.bruteforce import make_default_fns

    fns = make_default_fns(model, tok, editor, hparams, stats=stats, name=model_name, metrics=metrics,
                           cache=PreCache(), batch_size=batch_size)
    by_layer = {}
    for name, sel in selections.items():
        if sel.layer not in by_layer:  # two selectors on the same layer share one evaluation
            res = edit_cells(test, [sel.layer], batch_size=batch_size, progress=progress,
                             desc=f"{editor} at layer {sel.layer}", **fns.kwargs())
            result = EvalResult(model_name or "-", res.rows, res.failures)
            by_layer[sel.layer] = (result.table()[0] if result.rows else {}, len(result.failures))
        table, failures = by_layer[sel.layer]
        finish(dict(method=editor, selector=name, layer=sel.layer, cases=table.get("cases", 0), failures=failures,
                    seconds=sel.seconds, **{m: table.get(m) for m in metrics}))
    return Comparison(rows, selections, overall_note(metrics, overall_spec))


@dataclass
class _Truth:
    truth: GroundTruth
    failures: dict[int, int]  # layer -> failed cells


def _ground_truth(model, tok, test, editor, hparams, metrics, batch_size, progress, model_name, spec,
                  stats=None) -> _Truth:
    """Brute force over every layer of the test set: the per-layer means every selector is scored against."""
    from goldenlayers.evaluation.cells import edit_cells
    from goldenlayers.models.adapters import get_adapter
    from goldenlayers.selection.bruteforce import make_default_fns

    n = get_adapter(model).n_layers(model)
    fns = make_default_fns(model, tok, editor, hparams, stats=stats, name=model_name, metrics=metrics)
    res = edit_cells(test, range(n), progress=progress, batch_size=batch_size, desc="ground truth (test set)",
                     **fns.kwargs())
    if not res.rows:
        raise ValueError(f"the test-set sweep produced no result; failures: {[f.reason for f in res.failures[:3]]}")
    failures: dict[int, int] = {}
    for f in res.failures:
        failures[f.layer] = failures.get(f.layer, 0) + 1
    return _Truth(GroundTruth.from_rows(res.rows, res.seconds, spec), failures)
