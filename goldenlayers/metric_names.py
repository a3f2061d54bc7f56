"""The metrics: one `Metric` per name in goldenlayers.registry.METRICS, each with its direction, abbreviation and
label, and the metric families (docs/evaluation.md "Metrics"), without importing torch: the evaluation, Overall,
the run configuration and store, the regret of selectors and the report all read them from here.

- "easyedit" (the default): rewrite, rephrase, locality, portability, fluency (EasyEdit's conventions, which
  the paper uses; goldenlayers.evaluation.metrics). Overall averages these (goldenlayers.evaluation.overall).
- "counterfact-rome": ROME's own CounterFact metrics (goldenlayers.evaluation.counterfact_rome): efficacy,
  paraphrase and neighborhood score and magnitude, generation entropy; tables add ROME's overall Score
  (`rome_score`, the harmonic mean of the three scores' means).
- scores computed from other metrics (family None): `overall` and `rome_score`.

A family name may stand wherever a list of metrics is asked for (`--metrics counterfact-rome`,
`metrics: [counterfact-rome]` in a run config); `expand_metrics` replaces it by its members.

To add a metric: register a `Metric` below (one line) and compute it where its family is scored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from goldenlayers.registry import METRICS


@dataclass(frozen=True)
class Metric:
    """name: the key in rows and tables; abbr: the table column head (paper's Table 2 style); label: words;
    higher_is_better: the direction (golden layers take the argmax, else the argmin; Overall negates the others);
    family: the group it is measured with, None for a score computed from other metrics; in_overall: averaged
    into Overall; generated: samples text (left out by --no-fluency)."""

    name: str
    abbr: str
    label: str
    higher_is_better: bool = True
    family: str | None = None
    in_overall: bool = False
    generated: bool = False


def register_metric(metric: Metric) -> Metric:
    METRICS.register(metric.name, metric)
    return metric


for _m in (
    Metric("rewrite", "RwA", "Rewrite accuracy", family="easyedit", in_overall=True),
    Metric("rephrase", "RpA", "Rephrase accuracy", family="easyedit", in_overall=True),
    Metric("locality", "LOC", "Locality", family="easyedit", in_overall=True),
    Metric("portability", "PRT", "Portability", family="easyedit", in_overall=True),
    Metric("fluency", "FLC", "Fluency (n-gram entropy, bits)", higher_is_better=False, family="easyedit",
           in_overall=True, generated=True),
    Metric("efficacy_score", "ES", "Efficacy score", family="counterfact-rome"),
    Metric("efficacy_magnitude", "EM", "Efficacy magnitude", family="counterfact-rome"),
    Metric("paraphrase_score", "PS", "Paraphrase score", family="counterfact-rome"),
    Metric("paraphrase_magnitude", "PM", "Paraphrase magnitude", family="counterfact-rome"),
    Metric("neighborhood_score", "NS", "Neighborhood score", family="counterfact-rome"),
    Metric("neighborhood_magnitude", "NM", "Neighborhood magnitude", family="counterfact-rome"),
    Metric("generation_entropy", "GE", "Generation entropy", family="counterfact-rome", generated=True),
    Metric("overall", "OV", "Overall"),
    Metric("rome_score", "Score", "ROME's Score (harmonic mean of ES, PS, NS)"),
):
    register_metric(_m)


def metric(name: str) -> Metric:
    """The registered Metric `name` (UnknownNameError with "did you mean" else)."""
    return METRICS.get(name)


def _in_order(pred) -> tuple[str, ...]:
    """Names of the metrics satisfying `pred`, in registration order (the paper's)."""
    return tuple(name for name in METRICS.registered() if pred(METRICS.get(name)))


def family_members(family: str) -> tuple[str, ...]:
    return _in_order(lambda m: m.family == family)


def higher_is_better(name: str) -> bool:
    """A metric's direction (unknown names count as higher-is-better, like every score but fluency)."""
    return METRICS.get(name).higher_is_better if name in METRICS else True


def abbreviation(name: str) -> str:
    return METRICS.get(name).abbr if name in METRICS else name


def label(name: str) -> str:
    return METRICS.get(name).label if name in METRICS else name


EASYEDIT_METRICS = family_members("easyedit")
COUNTERFACT_ROME_METRICS = family_members("counterfact-rome")
FAMILIES = {"easyedit": EASYEDIT_METRICS, "counterfact-rome": COUNTERFACT_ROME_METRICS}
ALL_METRICS = EASYEDIT_METRICS + COUNTERFACT_ROME_METRICS  # the per-case metrics
OVERALL_METRICS = _in_order(lambda m: m.in_overall)
LOWER_IS_BETTER = frozenset(_in_order(lambda m: not m.higher_is_better))
GENERATED = frozenset(_in_order(lambda m: m.generated))  # metrics that sample text (left out by --no-fluency)
ROME_SCORE = "rome_score"  # a table column, not a per-case metric
# the column heads `evaluate` shortens (the long CounterFact names; the report abbreviates every metric)
ABBREVIATIONS = {name: abbreviation(name) for name in (*COUNTERFACT_ROME_METRICS, ROME_SCORE)}
ROME_SCORE_PARTS = ("efficacy_score", "paraphrase_score", "neighborhood_score")


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
