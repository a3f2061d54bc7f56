"""Editing metrics and the evaluation loop (REFERENCE.md section 4): rewrite, rephrase, locality, portability,
fluency, Overall; `evaluate()` edits each case, measures it against the cached unedited model, and restores."""

from goldenlayers.evaluation.evaluate import WeightsNotRestoredError, evaluate
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
