"""Brute force (BF): edit every case at every layer, score every metric (paper section 4: the ground truth behind
Tables 1 and 3-8 and the baseline of Figure 4; docs/golden.md).

The sweep itself is the package's one cell loop, `goldenlayers.evaluation.cells.edit_cells`, over every layer;
`make_default_fns` (goldenlayers.selection.sweep_fns, re-exported here) wires the real editor (v* batched) and
evaluator into it. `bruteforce_scores(rows, metric)` turns the sweep's rows (EvalRow, or the store's long
records) into the common LayerScores table (selector "bruteforce").
"""

from __future__ import annotations

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


__all__ = ["SWEEP_METRICS", "SweepFns", "bruteforce_scores", "make_default_fns"]
