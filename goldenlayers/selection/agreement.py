"""How well a layer selector's scores predict the brute-force table (docs/equations.md "LGA", "which variant best
predicts the BF golden layer is an empirical question"; paper section 5.2, Figure 3 and Tables 2/9/10).

For a selector (LGA, CMA, any variant) and a brute-force table of one metric (`bruteforce_scores`, higher is
better, per-layer means over cases), over the layers both scored:
- Spearman rank correlation of the selector's per-layer scores with the brute-force means (scipy.stats.spearmanr,
  average ranks for ties; NaN when either side is constant);
- regret = BF mean at the BF golden layer (argmax over every BF layer, first on ties) - BF mean at the selector's chosen layer (>= 0; 0 = the selector found
  a layer as good as the golden one). The chosen layer is the selector's argmax by default, or any layer passed
  as `chosen` (e.g. the Tukey-fenced pick of `LayerScores.pick()`);
- hit@k: the BF golden layer is among the selector's k best layers.
The selector can be a LayerScores, a {layer: score} mapping, or a ranking (list of layers, best first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from goldenlayers.selection.golden import argbest
from goldenlayers.selection.table import LayerScores

SelectorInput = LayerScores | Mapping[int, float] | Sequence[int]


def _as_scores(selector: SelectorInput) -> tuple[str, dict[int, float]]:
    if isinstance(selector, LayerScores):
        return selector.selector, {layer: float(s) for layer, s in zip(selector.layers, selector.scores, strict=True)}
    if isinstance(selector, Mapping):
        return "selector", {int(layer): float(s) for layer, s in selector.items()}
    ranking = [int(layer) for layer in selector]
    if len(set(ranking)) != len(ranking):
        raise ValueError(f"a ranking lists each layer once, got {ranking}")
    return "ranking", {layer: float(len(ranking) - i) for i, layer in enumerate(ranking)}


@dataclass(frozen=True)
class Agreement:
    """A selector measured against brute force; `layers`: those both scored (the Spearman and ranking domain)."""

    selector: str
    metric: str
    layers: list[int]
    spearman: float
    spearman_p: float
    bf_layer: int
    bf_score: float
    chosen_layer: int
    chosen_score: float
    regret: float
    hits: dict[int, bool]

    def row(self) -> dict:
        return dict(selector=self.selector, metric=self.metric, spearman=self.spearman, spearman_p=self.spearman_p,
                    bf_layer=self.bf_layer, bf_score=self.bf_score, chosen_layer=self.chosen_layer,
                    chosen_score=self.chosen_score, regret=self.regret,
                    **{f"hit@{k}": hit for k, hit in self.hits.items()})


def agreement(selector: SelectorInput, bruteforce: LayerScores, chosen: int | None = None,
              ks: Sequence[int] = (1, 3, 5)) -> Agreement:
    """Spearman, regret and hit@k of `selector` against the brute-force table `bruteforce` (higher is better)."""
    name, sel = _as_scores(selector)
    bf = dict(zip(bruteforce.layers, bruteforce.scores.tolist(), strict=True))
    layers = sorted(set(sel) & set(bf))
    if len(layers) < 2:
        raise ValueError(f"{name} and brute force share {len(layers)} scored layer(s) ({layers}); need at least 2")
    s = np.array([sel[layer] for layer in layers])
    b = np.array([bf[layer] for layer in layers])
    if np.ptp(s) == 0 or np.ptp(b) == 0:
        rho, p = float("nan"), float("nan")
    else:
        res = stats.spearmanr(s, b)
        rho, p = float(res.statistic), float(res.pvalue)
    bf_layer = bruteforce.layers[argbest(bruteforce.scores)]
    ranking = [layers[i] for i in np.argsort(-s, kind="stable")]
    if chosen is None:
        chosen = ranking[0]
    elif chosen not in bf:
        raise KeyError(f"chosen layer {chosen} has no brute-force score (brute force scored {bruteforce.layers})")
    if any(k < 1 for k in ks):
        raise ValueError(f"hit@k needs k >= 1, got {list(ks)}")
    return Agreement(name, bruteforce.meta.get("metric", bruteforce.selector), layers, rho, p, bf_layer,
                     bf[bf_layer], chosen, bf[chosen], bf[bf_layer] - bf[chosen],
                     {int(k): bf_layer in ranking[:k] for k in ks})
