"""Editing metrics and the cell loop (docs/evaluation.md): rewrite, rephrase, locality, portability, fluency,
Overall; `edit_cells` edits a batch of cases at a layer, scores, restores bitwise and records rows or failures;
`evaluate()` is that loop with the evaluator, measuring each case against the cached unedited model."""

from goldenlayers.evaluation.cells import Cell, CellResult, MethodEditor, WeightsNotRestoredError, edit_cells
from goldenlayers.evaluation.evaluate import evaluate
from goldenlayers.evaluation.fluency import (
    case_seed,
    fluency,
    fluency_entropy,
    ngram_entropy,
    sample_text,
    word_tokens,
)
from goldenlayers.evaluation.metrics import LOWER_IS_BETTER, METRICS, Scored, category_mean, teacher_forced
from goldenlayers.evaluation.overall import DEFAULT_OVERALL, OverallSpec, overall, overall_note
from goldenlayers.evaluation.result import ROW_COLUMNS, EvalFailure, EvalResult, EvalRow, combine
from goldenlayers.evaluation.scorer import (
    CaseScorer,
    CaseState,
    EvalSettings,
    PreCache,
    case_pairs,
    model_key,
)

__all__ = [
    "Cell",
    "CellResult",
    "MethodEditor",
    "edit_cells",
    "DEFAULT_OVERALL",
    "LOWER_IS_BETTER",
    "METRICS",
    "ROW_COLUMNS",
    "CaseScorer",
    "CaseState",
    "EvalFailure",
    "EvalResult",
    "EvalRow",
    "EvalSettings",
    "OverallSpec",
    "PreCache",
    "Scored",
    "WeightsNotRestoredError",
    "case_pairs",
    "case_seed",
    "category_mean",
    "combine",
    "evaluate",
    "fluency",
    "fluency_entropy",
    "model_key",
    "ngram_entropy",
    "overall",
    "overall_note",
    "sample_text",
    "teacher_forced",
    "word_tokens",
]
