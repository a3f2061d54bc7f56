"""Golden layers vs sample-wise optimal layers, and proxy-to-test transfer (docs/equations.md "Layer selection"; paper
section 4.1 / Table 1, section 4.2 / Figures 1-2, Appendix B.2 / Tables 3-8).

Input is one metric's LayerScores table (goldenlayers.selection.table, docs/selection.md "The common table"), built
from brute-force rows (case_id, layer, metric, value) by `LayerScores.from_rows`; everything here reads its
`per_case` matrix (an error for a table without one). Definitions, for the matrix V (N cases x L layers):
- sample-wise optimal layer of case i: argbest_l V[i, l], the FIRST tied layer on ties (as the paper reports);
- golden layer: argbest_l mean_i V[i, l] (first on ties); "best" is max, or min for a lower-is-better metric;
- golden vs optimal: the two per-case vectors V[i, opt_i] and V[i, golden], mean ± std, Student's t-test
  (paired over cases by default, scipy.stats.ttest_rel; "independent" = ttest_ind with equal variances as a
  setting) and the verdict "Yes" (statistically different, p < alpha) / "No". Identical vectors give p = 1.
- transfer: the golden layer of the proxy matrix scored on the test matrix, vs the test matrix's own golden
  layer; gap = |test best mean - test mean at the proxy layer| (>= 0). Proxy union: one golden layer from the
  pooled proxy cases of several datasets, scored on each dataset's test matrix (`proxy_union`), and the
  dataset x layer gap matrix that Figure 2 plots (`gap_matrix`).
- Overall per layer: the fixed per-row Overall (goldenlayers.evaluation.overall) of each layer's metric means;
  `golden_layers` gives the golden layer of every metric and of Overall, the one definition the report,
  `compare`, runs and the regret of selectors (goldenlayers.selection.regret) use.
Ties are decided with an absolute tolerance of 1e-12 so float rounding of equal means cannot reorder layers.
Nothing here prints; results are small dataclasses with `row()` dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from goldenlayers.evaluation.metrics import LOWER_IS_BETTER
from goldenlayers.evaluation.overall import OverallSpec, overall
from goldenlayers.selection.table import LayerScores

TIE_ATOL = 1e-12
OVERALL = "overall"


def higher_is_better(metric: str) -> bool:
    """False for fluency (the paper's lower-is-better metric), True for the accuracies and Overall."""
    return metric not in LOWER_IS_BETTER


def argbest(values, higher_is_better: bool = True, atol: float = TIE_ATOL) -> int:
    """Index of the best entry of a 1-D array, the first one among entries within `atol` of the best."""
    v = np.asarray(values, dtype=np.float64)
    best = v.max() if higher_is_better else v.min()
    close = v >= best - atol if higher_is_better else v <= best + atol
    return int(np.flatnonzero(close)[0])


def sample_wise_optimal(m: LayerScores, higher_is_better: bool = True) -> list[dict]:
    """Per case of m's per-case matrix: {case_id, layer (first tied best), score}."""
    values, case_ids = m.matrix()
    return [dict(case_id=c, layer=m.layers[(j := argbest(row, higher_is_better))], score=float(row[j]))
            for c, row in zip(case_ids, values, strict=True)]


def golden_layer(m: LayerScores, higher_is_better: bool = True) -> int:
    """The layer with the best mean over m's cases (first on ties)."""
    return m.layers[argbest(means(m), higher_is_better)]


def means(m: LayerScores) -> np.ndarray:
    """(L,) mean over the cases of m's per-case matrix at every layer."""
    return m.matrix()[0].mean(axis=0)


def layer_means(matrices: Mapping[str, LayerScores]) -> tuple[list[int], dict[str, np.ndarray]]:
    """(layers scored in every matrix, {metric: (L,) mean over that metric's cases at those layers})."""
    ms = dict(matrices)
    if not ms:
        raise ValueError("no metric matrices")
    layers = sorted(set.intersection(*(set(m.layers) for m in ms.values())))
    if not layers:
        raise ValueError(f"the metrics {sorted(ms)} share no scored layer")
    return layers, {k: means(m)[[m.layers.index(layer) for layer in layers]] for k, m in ms.items()}


def overall_curve(means: Mapping[str, np.ndarray], spec: OverallSpec | None = None) -> np.ndarray:
    """(L,) Overall of each layer's row of metric means ({metric: (L,) means}, e.g. from `layer_means`)."""
    return np.asarray(overall({k: np.asarray(v, dtype=np.float64) for k, v in means.items()}, spec),
                      dtype=np.float64).reshape(-1)


def best_layer(metric: str, layers: list[int], values) -> int:
    """The golden layer of a per-layer curve of `metric` (argmax, argmin for fluency; first on ties)."""
    return layers[argbest(values, higher_is_better(metric))]


def golden_layers(matrices: Mapping[str, LayerScores], spec: OverallSpec | None = None) -> dict[str, int]:
    """{metric: golden layer} for every matrix, plus "overall": the layer whose metric means have the best
    Overall (layers scored in every matrix; first on ties). THE definition of a golden layer in this package."""
    out = {k: golden_layer(m, higher_is_better(k)) for k, m in matrices.items() if k != OVERALL}
    layers, per_layer = layer_means({k: m for k, m in matrices.items() if k != OVERALL})
    curve = overall_curve(per_layer, spec)
    if np.isfinite(curve).all():
        out[OVERALL] = best_layer(OVERALL, layers, curve)
    return out


class CompareSettings(BaseModel):
    """alpha: significance level; test: paired (ttest_rel) or independent Student (ttest_ind, equal variances);
    ddof: of the reported stds (1 = sample std)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(0.05, gt=0, lt=1)
    test: Literal["paired", "independent"] = "paired"
    ddof: int = Field(1, ge=0)
    higher_is_better: bool = True


def mean_std(mean: float, std: float, digits: int = 4) -> str:
    """The paper's "0.9993±0.0135" cell."""
    return f"{mean:.{digits}f}±{std:.{digits}f}"


@dataclass(frozen=True)
class GoldenComparison:
    """Golden layer vs sample-wise optimal layers of one metric on one case set (a column of Table 1)."""

    metric: str
    dataset: str
    model: str
    golden_layer: int
    n: int
    optimal_mean: float
    optimal_std: float
    golden_mean: float
    golden_std: float
    t: float
    p: float
    alpha: float
    test: str

    @property
    def different(self) -> bool:
        return self.p < self.alpha

    @property
    def verdict(self) -> str:
        return "Yes" if self.different else "No"

    def row(self, digits: int = 4) -> dict:
        return dict(model=self.model, dataset=self.dataset, metric=self.metric, golden_layer=self.golden_layer,
                    cases=self.n, sample_wise_optimal=mean_std(self.optimal_mean, self.optimal_std, digits),
                    golden=mean_std(self.golden_mean, self.golden_std, digits),
                    statistical_difference=self.verdict, t=self.t, p=self.p, test=self.test, alpha=self.alpha)


def compare_golden(m: LayerScores, settings: CompareSettings | None = None, **overrides) -> GoldenComparison:
    """Golden vs sample-wise optimal on `m` (keyword overrides of CompareSettings allowed: alpha=0.01, ...)."""
    s = CompareSettings(**{**(settings.model_dump() if settings else {}), **overrides})
    values, case_ids = m.matrix()
    if len(case_ids) < 2:
        raise ValueError(f"{m.metric} ({m.dataset}): a t-test needs at least 2 cases, got {len(case_ids)}")
    opt = np.array([r["score"] for r in sample_wise_optimal(m, s.higher_is_better)])
    g = golden_layer(m, s.higher_is_better)
    gold = values[:, m.layers.index(g)]
    if np.array_equal(opt, gold):
        t, p = 0.0, 1.0
    else:
        res = stats.ttest_rel(opt, gold) if s.test == "paired" else stats.ttest_ind(opt, gold, equal_var=True)
        t, p = float(res.statistic), float(res.pvalue)
    return GoldenComparison(m.metric, m.dataset, m.model, g, len(opt), float(opt.mean()), float(opt.std(ddof=s.ddof)),
                            float(gold.mean()), float(gold.std(ddof=s.ddof)), t, p, s.alpha, s.test)


@dataclass(frozen=True)
class Transfer:
    """Golden layer found on a proxy set, scored on the test set, vs the test set's own golden layer."""

    metric: str
    dataset: str
    model: str
    proxy_layer: int
    proxy_score: float  # test-set mean at proxy_layer
    test_layer: int
    test_score: float  # test-set mean at test_layer (the best)
    gap: float  # |test_score - proxy_score| >= 0

    def rows(self) -> list[dict]:
        """Two rows in the shape of Tables 3-8: set "Proxy" and set "Test", both scored on the test set."""
        base = dict(model=self.model, dataset=self.dataset, metric=self.metric)
        return [dict(base, set="Proxy", layer=self.proxy_layer, score=self.proxy_score, gap=self.gap),
                dict(base, set="Test", layer=self.test_layer, score=self.test_score, gap=0.0)]


def _check_layers(a: LayerScores, b: LayerScores) -> None:
    if a.layers != b.layers:
        raise ValueError(f"{a.metric}: proxy layers {a.layers} differ from test layers {b.layers} ({b.dataset})")


def transfer_at(layer: int, test: LayerScores, higher_is_better: bool = True) -> Transfer:
    """A chosen layer (from any proxy or selector) scored on `test` against the test set's golden layer."""
    mean = means(test)
    best = argbest(mean, higher_is_better)
    at = float(mean[test.layers.index(layer)])
    return Transfer(test.metric, test.dataset, test.model, layer, at, test.layers[best], float(mean[best]),
                    abs(float(mean[best]) - at))


def proxy_transfer(proxy: LayerScores, test: LayerScores, higher_is_better: bool = True) -> Transfer:
    """Golden layer of `proxy` scored on `test` (one cell pair of Tables 3-8)."""
    _check_layers(proxy, test)
    return transfer_at(golden_layer(proxy, higher_is_better), test, higher_is_better)


def pooled(matrices: Iterable[LayerScores], dataset: str | None = None) -> LayerScores:
    """Stack the per-case matrices of several tables of the same metric and layers (e.g. the five proxy sets ->
    the proxy union). Case ids are prefixed with their dataset so equal ids from different datasets stay
    distinct."""
    ms = list(matrices)
    for m in ms[1:]:
        _check_layers(ms[0], m)
        if m.metric != ms[0].metric:
            raise ValueError(f"cannot pool metrics {ms[0].metric!r} and {m.metric!r}")
    label = dataset or "+".join(sorted({m.dataset for m in ms}))
    ids = [f"{m.dataset}/{c}" for m in ms for c in m.matrix()[1]]
    return LayerScores.metric_table(ms[0].metric, ids, ms[0].layers, np.vstack([m.matrix()[0] for m in ms]),
                                    dataset=label, model=ms[0].model, selector=ms[0].selector,
                                    higher_is_better=ms[0].higher_is_better)


@dataclass(frozen=True)
class UnionTransfer:
    """One golden layer from the pooled proxies (`layer`, its pooled mean `score`) and its transfer per dataset."""

    layer: int
    score: float
    transfers: list[Transfer]


def proxy_union(proxies: Mapping[str, LayerScores], tests: Mapping[str, LayerScores],
                higher_is_better: bool = True) -> UnionTransfer:
    """Golden layer of the union of the proxies, scored on each dataset's test matrix (keys: dataset names)."""
    missing = sorted(set(proxies) ^ set(tests))
    if missing:
        raise ValueError(f"proxy and test matrices must cover the same datasets; unmatched: {missing}")
    union = pooled(proxies.values())
    layer = golden_layer(union, higher_is_better)
    return UnionTransfer(layer, float(means(union)[union.layers.index(layer)]),
                         [transfer_at(layer, tests[d], higher_is_better) for d in tests])


@dataclass(frozen=True)
class GapMatrix:
    """Figure 2: gaps (D, L) = |best test mean of dataset d - test mean at layer l|; optimal[d] = every layer
    within the tie tolerance of the best (the stars); union_layer = the proxy-union golden layer (the band)."""

    datasets: list[str]
    layers: list[int]
    gaps: np.ndarray
    optimal: dict[str, list[int]]
    union_layer: int | None = None


def gap_matrix(tests: Mapping[str, LayerScores], higher_is_better: bool = True,
               union_layer: int | None = None) -> GapMatrix:
    """The dataset x layer matrix of the gap to each test set's best layer."""
    ms = list(tests.values())
    for m in ms[1:]:
        _check_layers(ms[0], m)
    gaps, optimal = [], {}
    for d, m in tests.items():
        mean = means(m)
        best = mean[argbest(mean, higher_is_better)]
        gap = np.abs(best - mean)
        gaps.append(gap)
        optimal[d] = [layer for layer, g in zip(m.layers, gap, strict=True) if g <= TIE_ATOL]
    return GapMatrix(list(tests), ms[0].layers, np.vstack(gaps), optimal, union_layer)
