"""The real editor and evaluator wired into the cell loop for brute force (paper section 4): `make_default_fns(model,
tok, method)` returns the callables `goldenlayers.evaluation.cells.edit_cells` takes, with the v* of a batch of
cases optimised together (goldenlayers.evaluation.cells.MethodEditor) and every metric scored by the evaluator's
CaseScorer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SWEEP_METRICS = ("rewrite", "rephrase", "locality", "portability")


@dataclass
class SweepFns:
    """The callables the cell loop needs: `edit_cells(cases, layers, **fns.kwargs())`."""

    prepare_fn: Callable
    apply_fn: Callable
    pre_fn: Callable
    score_fn: Callable
    weights_fn: Callable
    method: str = "-"
    prepare_grid_fn: Callable | None = None  # the cases at several layers, v* in one batch (edit_cells' layer_batch)
    score_batch_fn: Callable | None = None  # a batch of cells scored together, each under its own edit
    pre_batch_fn: Callable | None = None  # the pre-edit values of a batch's cases computed together

    def kwargs(self) -> dict:
        return dict(score_fn=self.score_fn, prepare_fn=self.prepare_fn, apply_fn=self.apply_fn, pre_fn=self.pre_fn,
                    weights_fn=self.weights_fn, method=self.method, prepare_grid_fn=self.prepare_grid_fn,
                    score_batch_fn=self.score_batch_fn, pre_batch_fn=self.pre_batch_fn)


def make_default_fns(model, tok, method: str = "r-rome", hparams=None, *, stats=None, metrics=None,
                     name: str | None = None, cache=None, batch_size: int = 16, seed: int = 0) -> SweepFns:
    """Wire the cell loop to goldenlayers.editing (`method`, `hparams`, key `stats`; v* batched) and to
    goldenlayers.evaluation's CaseScorer (`pre(case)` on the unedited model, cached in `cache`, a PreCache;
    `score(case, pre)` -> {metric: (pre, post)} on the edited one). `metrics` defaults to SWEEP_METRICS (fluency,
    which samples 100 tokens per case and layer, only when asked); batch_size: prompts per forward of the scorer;
    seed: of the fluency samples."""
    from goldenlayers.evaluation.cells import MethodEditor
    from goldenlayers.evaluation.scorer import CaseScorer, EvalSettings

    editor = MethodEditor(model, tok, method, hparams, stats=stats, name=name)
    scorer = CaseScorer(model, tok, EvalSettings(metrics=tuple(metrics or SWEEP_METRICS), batch_size=batch_size,
                                                 seed=seed), cache=cache)

    def score_fn(case, pre):
        return scorer.compare(case, pre, scorer.state(case))

    return SweepFns(editor.prepare_fn, editor.apply_fn, scorer.pre, score_fn, editor.weights_fn, method,
                    editor.prepare_grid_fn, scorer.score_batch, scorer.prepare)
