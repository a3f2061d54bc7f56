"""Brute force (BF): edit every case at every layer, score every metric (paper section 4: the ground truth behind
Tables 1 and 3-8 and the baseline of Figure 4; docs/golden.md).

The sweep itself is the package's one cell loop, `goldenlayers.evaluation.cells.edit_cells`, over every layer;
`make_default_fns` (goldenlayers.selection.sweep_fns, re-exported here) wires the real editor (v* batched) and
evaluator into it. `bruteforce_scores(rows, metric)` turns the sweep's rows (EvalRow, or the store's long
records) into the common LayerScores table (selector "bruteforce"). `bruteforce_select` is the selector's
scoring function in the registry's calling convention (goldenlayers.selection.registry): the sweep of the proxy
cases at every layer, scored by the input's `metric`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from goldenlayers.evaluation.result import records
from goldenlayers.selection.sweep_fns import SWEEP_METRICS, SweepFns, make_default_fns
from goldenlayers.selection.table import LayerScores, dataset_label


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

    rows = records(rows)
    seconds = sum({(str(r["case_id"]), int(r["layer"])): float(r.get("seconds", 0.0)) for r in rows}.values())
    datasets = dataset_label(r.get("dataset", "-") for r in rows)
    if metric == OVERALL:
        names = list(dict.fromkeys(r["metric"] for r in rows))
        matrices = {m: LayerScores.from_rows(rows, m, dataset=datasets, model=model) for m in names}
        layers, means = layer_means(matrices)
        return LayerScores(selector, datasets, model, layers, overall_curve(means, overall_spec),
                           cases=max(m.cases for m in matrices.values()), seconds=seconds,
                           meta=dict(metric=metric, higher_is_better=True, metrics=names))
    rows = [r for r in rows if r["metric"] == metric]
    m = LayerScores.from_rows(rows, metric, dataset=datasets, model=model)
    higher_is_better = direction(metric) if higher_is_better is None else higher_is_better
    sign = 1.0 if higher_is_better else -1.0
    return LayerScores.from_per_case(selector, datasets, model, m.layers, sign * m.per_case, m.case_ids,
                                     seconds=seconds, skipped=dict(m.skipped),
                                     meta=dict(metric=metric, higher_is_better=higher_is_better))


def bruteforce_select(inp, settings=None) -> LayerScores:
    """Brute force as a selector: edit every case of `inp` at every layer (inp.layers, default all) with the
    input's editor, hparams and key statistics, score inp.metrics, and return `bruteforce_scores` of inp.metric
    (its argmax is the golden layer); meta["failures"] counts the cells that failed."""
    from goldenlayers.evaluation.cells import edit_cells
    from goldenlayers.models.adapters import get_adapter

    start = time.perf_counter()
    n = get_adapter(inp.model).n_layers(inp.model)
    fns = make_default_fns(inp.model, inp.tok, inp.editor, inp.hparams, stats=inp.stats, name=inp.model_name,
                           metrics=inp.metrics)
    cases = list(inp.cases)
    # a proxy set smaller than a batch: the v* of several layers' (case, layer) pairs in one optimisation
    res = edit_cells(cases, inp.layers if inp.layers is not None else range(n), progress=inp.progress,
                     batch_size=inp.batch_size, layer_batch=max(1, inp.batch_size // max(1, len(cases))),
                     desc="brute force", **fns.kwargs())
    if not res.rows:
        raise ValueError(f"brute force produced no result; failures: {[f.reason for f in res.failures[:3]]}")
    table = bruteforce_scores(res.rows, inp.metric, model=inp.model_name or "-", overall_spec=inp.overall_spec)
    table.seconds = time.perf_counter() - start
    table.meta["failures"] = len(res.failures)
    return table


__all__ = ["SWEEP_METRICS", "SweepFns", "bruteforce_scores", "bruteforce_select", "make_default_fns"]
