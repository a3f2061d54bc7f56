"""ROME's own CounterFact metrics (Meng et al. 2022, section 3 and appendix; docs/evaluation.md), next to the
EasyEdit metrics of goldenlayers.evaluation.metrics.

For a prompt and an answer, nll is the mean over the answer's tokens of -log p(token | prompt and the answer's
earlier tokens), teacher forced on `prompt + " " + answer` (ROME's evaluation code divides the summed NLL by the
answer's length, so "P(o) > P(o')" compares per-token geometric means: for one-token objects, the probabilities).
With o* = target_new and o^c = the true object:

    efficacy_score       mean over the rewrite prompt(s) of [nll(o^c) > nll(o*)]          (P(o*) > P(o^c))
    efficacy_magnitude   mean of exp(-nll(o*)) - exp(-nll(o^c))
    paraphrase_score / _magnitude   the same over the case's rephrased prompts
    neighborhood_score   mean over the neighbourhood prompts of [nll(o^c) < nll(o*)]      (P(o^c) > P(o*))
    neighborhood_magnitude   mean of exp(-nll(o^c)) - exp(-nll(o*))
    generation_entropy   mean over the case's generation prompts of the weighted bi/tri-gram entropy of a seeded
                         top-k sample (goldenlayers.evaluation.fluency: 100 tokens in total, k = 5)

o^c is the case's ground truth (CounterFact's target_true) for the rewrite and paraphrase prompts, and each
locality probe's own answer for the neighbourhood prompts (CounterFact's neighbourhood probes answer target_true;
on other datasets the probe's answer plays that part). A case without a ground truth, rephrasings, probes or
generation prompts has no value for the metrics that need them. ROME's overall Score, the harmonic mean of the
three scores' means over the cases, is a table column (`rome_score`, goldenlayers.evaluation.result). ROME's
reference score and essence score need Wikipedia TF-IDF vectors and are not computed.
"""

from __future__ import annotations

import math

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.metrics import Scored
from goldenlayers.metric_names import COUNTERFACT_ROME_METRICS

Pair = tuple[str, str]
PROBABILITY_METRICS = tuple(m for m in COUNTERFACT_ROME_METRICS if m != "generation_entropy")


def _groups(case: EditCase) -> dict[str, list[tuple[str, str, bool]]]:
    """{kind: [(prompt, true object, new should win)]} for the kinds the case can be scored on."""
    old = case.old_answer
    out = {
        "efficacy": [(case.prompt, old, True)] if old else [],
        "paraphrase": [(p, old, True) for p in case.rephrase] if old else [],
        "neighborhood": [(p.prompt, p.answer, False) for p in case.locality],
    }
    return {k: v for k, v in out.items() if v}


def _chosen(case: EditCase, metrics: tuple[str, ...]) -> dict[str, list[tuple[str, str, bool]]]:
    kinds = {m.rsplit("_", 1)[0] for m in metrics if m in PROBABILITY_METRICS}
    return {k: v for k, v in _groups(case).items() if k in kinds}


def rome_pairs(case: EditCase, metrics: tuple[str, ...]) -> list[Pair]:
    """The (prompt, answer) pairs whose nll the chosen ROME metrics compare for `case`."""
    return [pair for items in _chosen(case, metrics).values() for prompt, true, _ in items
            for pair in ((prompt, case.target_new), (prompt, true))]


def rome_values(case: EditCase, scored: dict[Pair, Scored], metrics: tuple[str, ...]) -> dict[str, float]:
    """{metric: value} of the chosen ROME probability metrics for `case`, from the nll of its pairs."""
    out: dict[str, float] = {}
    for kind, items in _chosen(case, metrics).items():
        wins, margins = [], []
        for prompt, true, new_should_win in items:
            nll_new, nll_true = scored[(prompt, case.target_new)].nll, scored[(prompt, true)].nll
            if new_should_win:
                wins.append(float(nll_true > nll_new))
                margins.append(math.exp(-nll_new) - math.exp(-nll_true))
            else:
                wins.append(float(nll_true < nll_new))
                margins.append(math.exp(-nll_true) - math.exp(-nll_new))
        for suffix, values in (("score", wins), ("magnitude", margins)):
            if f"{kind}_{suffix}" in metrics:
                out[f"{kind}_{suffix}"] = sum(values) / len(values)
    return out
