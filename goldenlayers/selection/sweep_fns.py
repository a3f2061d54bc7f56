"""The real editor and evaluator wired into the brute-force sweep (paper section 4): `make_default_fns(model, tok,
method)` returns the callables `goldenlayers.selection.bruteforce.sweep` takes, with the v* of a batch of cases
optimised together (`edit_each`) and every metric scored by the evaluator's CaseScorer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from goldenlayers.cases import EditCase

SWEEP_METRICS = ("rewrite", "rephrase", "locality", "portability")


@dataclass
class SweepFns:
    """The callables `sweep` needs, wired to the real editor and evaluator: `sweep(cases, layers, **fns.kwargs())`."""

    prepare_fn: Callable
    apply_fn: Callable
    pre_fn: Callable
    score_fn: Callable
    weights_fn: Callable

    def kwargs(self) -> dict:
        return dict(score_fn=self.score_fn, prepare_fn=self.prepare_fn, apply_fn=self.apply_fn, pre_fn=self.pre_fn,
                    weights_fn=self.weights_fn)


class _Batch:
    """One prepared batch for the real editor: `edit_each` optimises the v* of all its cases together at the first
    apply and yields the edits in order; if it fails (one bad case, a failed update), the batch's remaining cases
    are edited one by one with `edit`, so a bad case fails alone."""

    def __init__(self, cases: list[EditCase], layer: int, edit_kw: dict):
        self.cases, self.layer, self.kw, self.gen, self.broken = cases, layer, edit_kw, None, False

    def apply(self, case: EditCase):
        from goldenlayers.editing import edit, edit_each

        if not self.broken:
            try:
                if self.gen is None:
                    self.gen = edit_each(cases=self.cases, layer=self.layer, batch_size=len(self.cases), **self.kw)
                result = next(self.gen)
                if result.diagnostics[0].case_id != case.case_id:
                    raise RuntimeError(f"edit_each yielded case {result.diagnostics[0].case_id!r}, "
                                       f"expected {case.case_id!r}")
                return result
            except Exception:
                self.broken = True
        return edit(cases=[case], layer=self.layer, **self.kw)


def make_default_fns(model, tok, method: str = "r-rome", hparams=None, *, stats=None, metrics=None,
                     name: str | None = None) -> SweepFns:
    """Wire `sweep` to goldenlayers.editing (`edit_each` / `edit` of `method`, `hparams`, key `stats`) and to
    goldenlayers.evaluation's CaseScorer (`pre(case)` on the unedited model, cached; `score(case, pre)` ->
    {metric: float} on the edited one). `metrics` defaults to SWEEP_METRICS (fluency, which samples 100 tokens
    per case and layer, only when asked)."""
    from goldenlayers.evaluation.scorer import CaseScorer, EvalSettings
    from goldenlayers.models.adapters import get_adapter

    adapter = get_adapter(model)
    edit_kw = dict(model=model, tok=tok, method=method, hparams=hparams, stats=stats, adapter=adapter, name=name)

    def prepare_fn(cases, layer):
        batch = _Batch(list(cases), layer, edit_kw)
        return [(batch, case) for case in cases]

    def apply_fn(item):
        batch, case = item
        return batch.apply(case)

    scorer = CaseScorer(model, tok, EvalSettings(metrics=tuple(metrics or SWEEP_METRICS)))

    def pre_fn(case):
        return scorer.pre(case)

    def score_fn(case, pre):
        return scorer.score(case, pre)

    return SweepFns(prepare_fn, apply_fn, pre_fn, score_fn, lambda layer: [adapter.weight_param(model, layer)])
