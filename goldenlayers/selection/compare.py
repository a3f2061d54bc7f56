"""`select_layer` (one selector, one case set) and `compare_selectors` (the paper's Table 2 experiment).

select_layer runs LGA (section 5 of the paper; Tukey-fence pick), CMA (ROME's causal tracing; argmax of the mean
indirect effect of the MLP at the last subject token) or brute force (edit every case at every layer; the golden
layer of `metric`) and returns the common LayerScores table with the chosen layer.
compare_selectors finds each selector's layer on a proxy set, edits the test set at that layer, and returns one
row per (editing method, selector) with rewrite, rephrase, locality, portability, fluency and Overall (min-max
over the compared rows, stated with the table), plus each selector's wall time and its ratio to brute force.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from goldenlayers.cases import EditCase
from goldenlayers.selection.pick import LayerPick, pick_layer
from goldenlayers.selection.table import LayerScores

SELECTORS = ("lga", "cma", "bruteforce")


@dataclass
class Selection:
    """A selector's table and its chosen layer (`pick` holds the Tukey fences for LGA; None otherwise)."""

    selector: str
    table: LayerScores
    layer: int
    seconds: float
    pick: LayerPick | None = None


def select_layer(model, tok, cases: Sequence[EditCase], method: str = "lga", editor: str = "r-rome",
                 hparams=None, layers: Sequence[int] | None = None, metric: str = "rewrite", tukey_k: float = 1.5,
                 cma_window: int = 10, batch_size: int = 16, progress: bool = True, model_name: str | None = None,
                 stats=None, **selector_kw) -> Selection:
    """Score every layer with `method` ("lga" | "cma" | "bruteforce") on `cases` and choose one. hparams and key
    statistics `stats` ({layer: C}) are the brute-force editor's."""
    cases = list(cases)
    if not cases:
        raise ValueError("select_layer needs at least one case")
    start = time.perf_counter()
    layers = list(layers) if layers is not None else None
    if method == "lga":
        from goldenlayers.selection.lga import lga_scores

        table = lga_scores(model, tok, cases, layers=layers, batch_size=batch_size, progress=progress,
                           model_name=model_name, **selector_kw)
        pick = pick_layer(table, k=tukey_k)
        return Selection("lga", table, pick.layer, time.perf_counter() - start, pick)
    if method == "cma":
        from goldenlayers.selection.cma import cma_scores

        table = cma_scores(model, tok, cases, window=cma_window, layers=layers, progress=progress,
                           model_name=model_name, **selector_kw)
        if not table.cases:
            raise ValueError("CMA kept no case: the model answers none of them correctly (known-fact filter)")
        return Selection("cma", table, table.best(), time.perf_counter() - start)
    if method == "bruteforce":
        from goldenlayers.models.adapters import get_adapter
        from goldenlayers.selection.bruteforce import bruteforce_scores, make_default_fns, sweep

        n = get_adapter(model).n_layers(model)
        fns = make_default_fns(model, tok, editor, hparams, stats=stats, name=model_name)
        res = sweep(cases, layers if layers is not None else range(n), progress=progress, batch_size=batch_size,
                    **fns.kwargs(), **selector_kw)
        if not res.rows:
            raise ValueError(f"brute force produced no result; failures: {[f.reason for f in res.failures[:3]]}")
        table = bruteforce_scores(res.rows, metric, model=model_name or "-")
        table.seconds = time.perf_counter() - start
        table.meta["failures"] = len(res.failures)
        return Selection("bruteforce", table, table.best(), table.seconds)
    raise ValueError(f"unknown selector {method!r}; choose one of {', '.join(SELECTORS)}")


@dataclass
class Comparison:
    """Rows of the Table-2-shaped comparison and the selections behind them."""

    rows: list[dict]
    selections: dict[str, Selection] = field(default_factory=dict)
    normalisation: str = ""


def compare_selectors(model, tok, proxy: Sequence[EditCase], test: Sequence[EditCase], editor: str = "r-rome",
                      hparams=None, selectors: Sequence[str] = SELECTORS, metric: str = "rewrite",
                      fluency: bool = True, batch_size: int = 16, progress: bool = True,
                      model_name: str | None = None, selector_kw: dict | None = None,
                      stats=None) -> Comparison:
    """Select a layer with each selector on `proxy`, edit `test` at it with `editor`, and compare (Table 2).
    hparams and key statistics `stats` ({layer: C}, None for C = I) are the editor's, in the selection and the
    evaluation alike."""
    from goldenlayers.evaluation import evaluate
    from goldenlayers.evaluation.overall import overall
    from goldenlayers.evaluation.scorer import PreCache

    selector_kw = selector_kw or {}
    selections = {s: select_layer(model, tok, proxy, s, editor=editor, hparams=hparams, metric=metric,
                                  batch_size=batch_size, progress=progress, model_name=model_name, stats=stats,
                                  **selector_kw.get(s, {}))
                  for s in selectors}
    run_editor, run_hparams = editor, hparams
    if stats is not None:  # a method name editor cannot take C: bind it into a callable
        def run_editor(model, tok, case, layer):
            from goldenlayers.editing import edit

            return edit(model, tok, case, method=editor, layer=layer, hparams=hparams, stats=stats, name=model_name)
        run_editor.__name__, run_hparams = editor, None
    cache, by_layer, rows = PreCache(), {}, []
    for name, sel in selections.items():
        if sel.layer not in by_layer:  # two selectors on the same layer share one evaluation
            result = evaluate(model, tok, test, editor=run_editor, layer=sel.layer, hparams=run_hparams, fluency=fluency,
                              batch_size=batch_size, progress=progress, cache=cache)
            by_layer[sel.layer] = (result.table()[0] if result.rows else {}, len(result.failures))
        table, failures = by_layer[sel.layer]
        rows.append(dict(method=editor, selector=name, layer=sel.layer, cases=table.get("cases", 0),
                         failures=failures, seconds=sel.seconds,
                         **{m: table.get(m) for m in ("rewrite", "rephrase", "locality", "portability", "fluency")}))
    bf = selections.get("bruteforce")
    for r in rows:
        r["speedup_vs_bruteforce"] = bf.seconds / r["seconds"] if bf and r["seconds"] > 0 else None
    o = overall(rows)
    for r, v in zip(rows, o.values):
        r["overall"] = v
    return Comparison(rows, selections, o.normalisation)
