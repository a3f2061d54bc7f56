"""What the report reads from a run store, aggregated in SQL (so large runs never load every row), and the display
names of datasets, methods, selectors and metrics, read from their registries (goldenlayers.registry: a dataset's
or method's label, a selector's label, a metric's abbreviation and direction; docs/report.md).

Overall: the fixed per-row score of goldenlayers.evaluation.overall, computed there and nowhere else (the same
layer has the same Overall in every table; docs/evaluation.md "Overall"); per layer it is the Overall of that
layer's metric means, and its golden layer comes from goldenlayers.selection.golden.golden_layers' definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from goldenlayers.evaluation.overall import OverallSpec
from goldenlayers.metric_names import abbreviation
from goldenlayers.registry import DATASETS as DATASET_REGISTRY
from goldenlayers.registry import METHODS as METHOD_REGISTRY
from goldenlayers.registry import METRICS as METRIC_REGISTRY
from goldenlayers.runs.schema import METRICS
from goldenlayers.runs.store import Store
from goldenlayers.selection.registry import selector_family, selector_label

BRUTEFORCE = "bruteforce"
METHOD_ORDER = ("r-rome", "emmet", "rome", "memit")  # the paper's order; other methods follow by name
METRIC_ABBR = {m: abbreviation(m) for m in METRIC_REGISTRY.names()}
__all__ = ["BRUTEFORCE", "METRIC_ABBR", "Curves", "RunData", "Unavailable", "dataset_label", "method_label",
           "metric_curves", "selector_family", "selector_label"]


class Unavailable(RuntimeError):
    """A table or figure that cannot be built from this run; the message says why (shown in the report)."""


def golden_module():
    """goldenlayers.selection.golden (statistics of golden vs sample-wise optimal layers), imported lazily."""
    try:
        from goldenlayers.selection import golden
    except ImportError as e:
        raise Unavailable(f"goldenlayers.selection.golden is not available ({e})") from None
    return golden


def _order(names, canonical) -> list[str]:
    names = set(names)
    return [n for n in canonical if n in names] + sorted(names - set(canonical))


def dataset_label(d: str) -> str:
    """A dataset's label in tables ("wiki_counterfact" -> "WikiCounterfact"); an unregistered name as it is."""
    return DATASET_REGISTRY.get(d).display if d in DATASET_REGISTRY else d


def method_label(m: str) -> str:
    """An editing method's label ("r-rome" -> "R-ROME"); an unregistered name as it is."""
    return METHOD_REGISTRY.get(m).display if m in METHOD_REGISTRY else m


class RunData:
    """Read access to one run store for the report."""

    def __init__(self, store: Store):
        self.store = store
        self._matrices: dict[tuple, object] = {}

    def _q(self, sql: str, *params) -> list[tuple]:
        return self.store.query(sql, params)

    def models(self) -> list[str]:
        return sorted({r[0] for r in self._q("SELECT DISTINCT model FROM results UNION "
                                             "SELECT DISTINCT model FROM selectors")})

    def datasets(self, model: str | None = None) -> list[str]:
        q = "SELECT DISTINCT dataset FROM results" + (" WHERE model = ?" if model else "")
        return _order((r[0] for r in self._q(q, *([model] if model else []))), DATASET_REGISTRY.registered())

    def methods(self, model: str, selector: str = BRUTEFORCE) -> list[str]:
        q = "SELECT DISTINCT method FROM results WHERE model = ? AND selector = ?"
        return _order((r[0] for r in self._q(q, model, selector)), METHOD_ORDER)

    def metrics(self, model: str, dataset: str, method: str, selector: str = BRUTEFORCE) -> list[str]:
        q = "SELECT DISTINCT metric FROM results WHERE model=? AND dataset=? AND method=? AND selector=?"
        return _order((r[0] for r in self._q(q, model, dataset, method, selector)), METRICS)

    def matrix(self, model: str, dataset: str, method: str, metric: str, split: str | None = None):
        """Brute-force LayerScores table of one metric (per-case values, cases x layers); split None = every case. None when empty.
        Cached: the tables and figures ask for the same matrices several times."""
        key = (model, dataset, method, metric, split)
        if key not in self._matrices:
            self._matrices[key] = self._matrix(*key)
        return self._matrices[key]

    def _matrix(self, model: str, dataset: str, method: str, metric: str, split: str | None):
        q = ("SELECT case_id, layer, value FROM results WHERE model=? AND dataset=? AND method=? AND selector=? "
             "AND metric=?" + (" AND split=?" if split else ""))
        rows = self._q(q, model, dataset, method, BRUTEFORCE, metric, *([split] if split else []))
        if not rows:
            return None
        return golden_module().LayerScores.from_rows(
            [dict(case_id=c, layer=layer, metric=metric, value=v) for c, layer, v in rows], metric,
            dataset=dataset, model=model)

    def picks(self, model: str, dataset: str) -> list[tuple[str, str]]:
        """(method, selector) pairs with test rows edited at a selector's chosen layer."""
        q = ("SELECT DISTINCT method, selector FROM results WHERE model=? AND dataset=? AND selector != ? "
             "AND split = 'test'")
        pairs = self._q(q, model, dataset, BRUTEFORCE)
        return sorted(pairs, key=lambda p: (METHOD_ORDER.index(p[0]) if p[0] in METHOD_ORDER else len(METHOD_ORDER), p))

    def means(self, model: str, dataset: str, method: str, selector: str, split: str = "test",
              layer: int | None = None) -> tuple[dict[str, float], list[int], int]:
        """({metric: mean value}, layers seen, cases) of the rows of one (method, selector) on a split."""
        cond = "model=? AND dataset=? AND method=? AND selector=? AND split=?" + (" AND layer=?" if layer is not None
                                                                                 else "")
        params = (model, dataset, method, selector, split, *([layer] if layer is not None else []))
        means = {m: float(v) for m, v in self._q(f"SELECT metric, AVG(value) FROM results WHERE {cond} "
                                                 "GROUP BY metric", *params)}
        layers = sorted(r[0] for r in self._q(f"SELECT DISTINCT layer FROM results WHERE {cond}", *params))
        n = self._q(f"SELECT COUNT(DISTINCT case_id) FROM results WHERE {cond}", *params)[0][0]
        return {m: means[m] for m in _order(means, METRICS)}, layers, int(n)

    def runtimes(self, model: str) -> dict[str, dict[str, float]]:
        """{dataset: {selector family: seconds}}: a selector's run time from its selector rows; brute force from
        its own selector rows when written, else the summed seconds of its distinct proxy (case, layer) cells
        of the first swept method (the cost of finding the golden layer by brute force on the proxy set)."""
        out: dict[str, dict[str, float]] = {}
        for sel, ds, sec in self._q("SELECT selector, dataset, MAX(seconds) FROM selectors WHERE model=? "
                                    "GROUP BY selector, dataset", model):
            out.setdefault(ds, {})[selector_family(sel)] = float(sec)
        methods = self.methods(model)
        for ds in self.datasets(model):
            if methods and BRUTEFORCE not in out.get(ds, {}):
                (sec,) = self._q("SELECT SUM(s) FROM (SELECT MAX(seconds) AS s FROM results WHERE model=? AND "
                                 "dataset=? AND method=? AND selector=? AND split='proxy' GROUP BY case_id, layer)",
                                 model, ds, methods[0], BRUTEFORCE)[0]
                if sec is not None:
                    out.setdefault(ds, {})[BRUTEFORCE] = float(sec)
        return {ds: out[ds] for ds in _order(out, DATASET_REGISTRY.registered())}

    def selector_scores(self, model: str, dataset: str, selector: str) -> tuple[list[int], list[float], float] | None:
        """(layers, scores, seconds) of a selector's rows (its per-layer scores, higher is better), or None."""
        rows = self._q("SELECT layer, score, seconds FROM selectors WHERE model=? AND dataset=? AND selector=? "
                       "ORDER BY layer", model, dataset, selector)
        return ([int(r[0]) for r in rows], [float(r[1]) for r in rows], max(float(r[2]) for r in rows)) if rows \
            else None

    def sweep_seconds(self, model: str, dataset: str, method: str, split: str) -> float:
        """Summed seconds of the distinct brute-force (case, layer) cells of `method` on `split` (0 when none)."""
        (sec,) = self._q("SELECT SUM(s) FROM (SELECT MAX(seconds) AS s FROM results WHERE model=? AND dataset=? "
                         "AND method=? AND selector=? AND split=? GROUP BY case_id, layer)",
                         model, dataset, method, BRUTEFORCE, split)[0]
        return float(sec or 0.0)

    def truth(self, model: str, dataset: str, method: str, spec: OverallSpec | None = None):
        """The test-set ground truth (goldenlayers.selection.regret.GroundTruth) of `method`'s brute-force rows,
        or None when it has none on the test split."""
        from goldenlayers.selection.regret import GroundTruth

        matrices = {m: x for m in self.metrics(model, dataset, method) if m != "overall"
                    and (x := self.matrix(model, dataset, method, m, "test")) is not None}
        if not matrices:
            return None
        return GroundTruth.from_matrices(matrices, self.sweep_seconds(model, dataset, method, "test"), spec)

    def counts(self) -> dict[str, int]:
        return {t: self.store.count(t) for t in ("results", "selectors", "failures")}


@dataclass
class Curves:
    """Per-layer means of one metric on the proxy and test splits (Figure 1, Tables 3-8).

    layers: (L,); test: (L,) test means; proxy: (L,) proxy means or None (no proxy rows); test_layer /
    proxy_layer: the golden layer of each split; test_score / proxy_score: the TEST mean at those layers.
    """

    metric: str
    layers: list[int]
    test: np.ndarray
    test_layer: int
    test_score: float
    proxy: np.ndarray | None = None
    proxy_layer: int | None = None
    proxy_score: float | None = None


def _curves(metric: str, layers: list[int], test: np.ndarray, proxy: np.ndarray | None) -> Curves:
    golden = golden_module()
    t = layers.index(golden.best_layer(metric, layers, test))
    c = Curves(metric, layers, test, layers[t], float(test[t]), proxy)
    if proxy is not None:
        p = layers.index(golden.best_layer(metric, layers, proxy))
        c.proxy_layer, c.proxy_score = layers[p], float(test[p])
    return c


def metric_curves(data: RunData, model: str, dataset: str, method: str,
                  spec: OverallSpec | None = None) -> dict[str, Curves]:
    """{metric: Curves} for every brute-force metric of (model, dataset, method), plus "overall": the Overall of
    each layer's metric means (`golden.overall_curve`; when at least one metric has curves)."""
    out: dict[str, Curves] = {}
    for metric in data.metrics(model, dataset, method):
        if metric == "overall":
            continue
        test = data.matrix(model, dataset, method, metric, "test")
        if test is None:
            continue
        proxy = data.matrix(model, dataset, method, metric, "proxy")
        pm = None
        if proxy is not None and proxy.layers == test.layers:
            pm = proxy.scores  # the layer means of the per-case values
        out[metric] = _curves(metric, test.layers, test.scores, pm)
    if out:
        golden = golden_module()
        layers = sorted(set.intersection(*(set(c.layers) for c in out.values())))

        def per_layer(split: str) -> np.ndarray:
            return golden.overall_curve({m: np.array([getattr(c, split)[c.layers.index(layer)] for layer in layers])
                                         for m, c in out.items()}, spec)
        test = per_layer("test")
        proxy = per_layer("proxy") if all(c.proxy is not None for c in out.values()) else None
        if np.isfinite(test).all():
            out["overall"] = _curves("overall", layers, test,
                                     proxy if proxy is not None and np.isfinite(proxy).all() else None)
    return out
