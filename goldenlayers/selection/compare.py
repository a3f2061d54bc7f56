"""`compare_selectors`: the paper's Table 2 experiment (sections 4-5; docs/selection.md "Comparing selectors").

compare_selectors finds each selector's layer on a proxy set with `select_layer` (goldenlayers.selection.select:
any registered selector; brute force picks the proxy golden layer of `metric`), edits the test set at that layer,
and returns one row per (editing method, selector) with rewrite, rephrase, locality, portability, fluency and
Overall (the fixed per-row score of goldenlayers.evaluation.overall), plus each selector's wall time and its ratio
to brute force.
With `truth=True` it also sweeps every layer on the TEST set (the ground truth): each row's metrics then come from
that sweep at the chosen layer, and the row gains its regret (Overall and per metric), Spearman's rho of the
selector's layer scores with the per-layer test Overall, and its cost as a fraction of the sweep's time
(goldenlayers.selection.regret). `on_selection(Selection)` and `on_row(dict)` are called as soon as each is known,
so a caller can print partial results before the slow parts finish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.overall import OverallSpec, overall, overall_note
from goldenlayers.selection.registry import available_selectors
from goldenlayers.selection.regret import GroundTruth, score_selector
from goldenlayers.selection.select import Selection, select_layer


@dataclass
class Comparison:
    """Rows of the Table-2-shaped comparison, the selections behind them, the definition of Overall used, and the
    test-set ground truth (None without `truth=True`)."""

    rows: list[dict]
    selections: dict[str, Selection] = field(default_factory=dict)
    normalisation: str = ""
    truth: GroundTruth | None = None


def compare_selectors(model, tok, proxy: Sequence[EditCase], test: Sequence[EditCase], editor: str = "r-rome",
                      hparams=None, selectors: Sequence[str] | None = None, metric: str = "overall",
                      fluency: bool = True, batch_size: int = 16, progress: bool = True,
                      model_name: str | None = None, selector_kw: dict | None = None, truth: bool = False,
                      overall_spec: OverallSpec | None = None, on_selection: Callable[[Selection], None] | None = None,
                      on_row: Callable[[dict], None] | None = None, stats=None) -> Comparison:
    """Select a layer with each selector (default: every registered one, race first) on `proxy`, edit `test` at it
    with `editor`, and compare (Table 2); brute force picks the proxy golden layer of `metric`; selector_kw:
    {selector: settings overrides}. See the module docstring for `truth` and the callbacks.
    hparams and key statistics `stats` ({layer: C}, None for C = I) are the editor's, in the selection, the ground
    truth and the evaluation alike."""
    from goldenlayers.evaluation.scorer import PreCache
    from goldenlayers.selection.sweep_fns import SWEEP_METRICS

    selector_kw = selector_kw or {}
    metrics = (*SWEEP_METRICS, "fluency") if fluency else SWEEP_METRICS
    selections = {}
    for s in available_selectors() if selectors is None else selectors:
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
