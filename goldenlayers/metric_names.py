"""Metric names and metric families (docs/evaluation.md), without importing torch: the evaluation, the run
configuration and store, and the report all read them from here.

- "easyedit" (the default): rewrite, rephrase, locality, portability, fluency (EasyEdit's conventions, which
  the paper uses; goldenlayers.evaluation.metrics).
- "counterfact-rome": ROME's own CounterFact metrics (goldenlayers.evaluation.counterfact_rome): efficacy,
  paraphrase and neighborhood score and magnitude, generation entropy; tables add ROME's overall Score
  (`rome_score`, the harmonic mean of the three scores' means).

A family name may stand wherever a list of metrics is asked for (`--metrics counterfact-rome`,
`metrics: [counterfact-rome]` in a run config); `expand_metrics` replaces it by its members.
"""

from __future__ import annotations

from collections.abc import Iterable

EASYEDIT_METRICS = ("rewrite", "rephrase", "locality", "portability", "fluency")
COUNTERFACT_ROME_METRICS = (
    "efficacy_score", "efficacy_magnitude", "paraphrase_score", "paraphrase_magnitude",
    "neighborhood_score", "neighborhood_magnitude", "generation_entropy",
)
ROME_SCORE = "rome_score"  # a table column, not a per-case metric
ROME_SCORE_PARTS = ("efficacy_score", "paraphrase_score", "neighborhood_score")
FAMILIES = {"easyedit": EASYEDIT_METRICS, "counterfact-rome": COUNTERFACT_ROME_METRICS}
ALL_METRICS = EASYEDIT_METRICS + COUNTERFACT_ROME_METRICS
GENERATED = frozenset({"fluency", "generation_entropy"})  # metrics that sample text (left out by --no-fluency)
ABBREVIATIONS = dict(efficacy_score="ES", efficacy_magnitude="EM", paraphrase_score="PS", paraphrase_magnitude="PM",
                     neighborhood_score="NS", neighborhood_magnitude="NM", generation_entropy="GE", rome_score="Score")


def expand_metrics(names: Iterable[str]) -> tuple[str, ...]:
    """`names` with every family name replaced by its metrics, in order, without repeats (unknown names kept, for
    the caller to reject)."""
    out: list[str] = []
    for name in names:
        out += FAMILIES.get(name, (name,))
    return tuple(dict.fromkeys(out))


def harmonic_mean(values: Iterable[float]) -> float:
    """ROME's Score: the harmonic mean (0 when any value is 0, as scipy.stats.hmean gives)."""
    values = list(values)
    if any(v == 0 for v in values):
        return 0.0
    return len(values) / sum(1 / v for v in values)
