"""`evaluate()`: edit the cases at a layer, measure them, restore (docs/evaluation.md).

For every layer asked for and every case: apply the editor (a method name of goldenlayers.editing, imported only
when used, with the v* of a batch of cases optimised together, or a callable `editor(model, tok, case, layer) ->
handle with .restore()`), measure the case's metrics on the edited model, restore, and compare with the unedited
model's results, which are computed once per case before any edit (batched across cases) and cached
(goldenlayers.evaluation.scorer). It is the cell loop (goldenlayers.evaluation.cells) with the CaseScorer: a case
whose pre-edit scoring, edit or post-edit scoring fails is recorded in `failures` with its stage and reason and
the run goes on; when a layer is given, the edited down-proj weight must come back bitwise after restore, or the
run stops with WeightsNotRestoredError (every later row would be wrong). Without an editor the model is measured
as it is (post = pre, locality 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.cells import MethodEditor, edit_cells
from goldenlayers.evaluation.metrics import METRICS
from goldenlayers.evaluation.result import EvalResult
from goldenlayers.evaluation.scorer import CaseScorer, EvalSettings, PreCache
from goldenlayers.metric_names import GENERATED, expand_metrics


def _editor(editor, hparams, model, tok, stats=None, name=None) -> tuple[dict | None, str]:
    """The cell loop's editor arguments for `editor` (None: no edit; a method name: v* batched over the cases of a
    batch, MethodEditor; a callable: one case at a time) and the method label of the rows."""
    if editor is None:
        if hparams is not None:
            raise ValueError("hparams were given but no editor")
        return None, "none"
    if isinstance(editor, str):
        kw = MethodEditor(model, tok, editor, hparams, stats=stats, name=name).kwargs()
        return kw, kw.pop("method")
    if callable(editor):
        if hparams is not None or stats is not None:
            raise ValueError("hparams and stats apply to a method name editor; bind them into your callable instead")
        kw = dict(edit_fn=lambda case, layer: editor(model, tok, case, layer), weights_fn=_weights_of(model))
        return kw, getattr(editor, "__name__", type(editor).__name__)
    raise TypeError(f"editor must be None, a method name or a callable, got {type(editor).__name__}")


def _model_label(model) -> str:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "name_or_path", "") or getattr(cfg, "model_type", "") or type(model).__name__


def _layers(layer) -> list[int | None]:
    if layer is None or isinstance(layer, int):
        return [layer]
    layers = list(layer)
    if not layers or not all(isinstance(x, int) for x in layers):
        raise ValueError(f"layer must be None, an int or a non-empty list of ints, got {layer!r}")
    return layers


def _weights_of(model):
    """weights_fn watching the down-proj weight of a layer (None when there is no adapter for the model)."""
    from goldenlayers.models.adapters import UnknownArchitectureError, get_adapter

    try:
        adapter = get_adapter(model)
    except (UnknownArchitectureError, AttributeError):
        return None
    return lambda layer: [adapter.weight_param(model, layer)]


class _Unedited:
    def restore(self) -> None:
        pass


def evaluate(model, tok, cases: Iterable[EditCase], editor: str | Callable | None = None,
             layer: int | Sequence[int] | None = None, hparams=None, metrics: Sequence[str] = METRICS,
             batch_size: int = 16, fluency: bool = True, seed: int = 0, progress: bool = True,
             cache: PreCache | None = None, fluency_max_tokens: int = 100, edit_batch_size: int = 16,
             stats=None, model_name: str | None = None) -> EvalResult:
    """Evaluate `cases` on `model`: edited one at a time by `editor` at `layer` (an int, a list of layers, or None
    for the method's default), or unedited when editor is None. Returns an EvalResult (rows, failures, table()).

    metrics: any of METRICS, of goldenlayers.metric_names.ALL_METRICS, or a family name such as "counterfact-rome"
    (ROME's CounterFact metrics); fluency=False leaves out the metrics that sample text (fluency, generation
    entropy); seed: fluency sampling (per case); cache: share
    pre-edit results between runs on the same unedited model; fluency_max_tokens: total length of each sample;
    edit_batch_size: cases whose v* a method name editor optimises together; stats: its key statistics
    ({layer: C}, None for C = I); model_name: the name its preset is chosen by.
    """
    cases = list(cases)
    chosen = tuple(m for m in expand_metrics(metrics) if fluency or m not in GENERATED)
    settings = EvalSettings(metrics=chosen, batch_size=batch_size, seed=seed, fluency_max_tokens=fluency_max_tokens)
    editor_kw, method = _editor(editor, hparams, model, tok, stats, model_name)
    layers = _layers(layer)
    scorer = CaseScorer(model, tok, settings, cache)
    result = EvalResult(model=_model_label(model))
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        scorer.prepare(cases)  # the unedited model's results of every case, batched across cases (cached)
        if editor_kw is None:  # measured as it is: post = pre
            editor_kw = dict(edit_fn=lambda case, layer: _Unedited())

            def score_fn(case, pre):
                return scorer.compare(case, pre, pre)
        else:
            def score_fn(case, pre):
                return scorer.compare(case, pre, scorer.state(case))
        if "prepare_fn" in editor_kw:  # a method of goldenlayers.editing: its cells are scored batch by batch
            editor_kw = dict(editor_kw, score_batch_fn=scorer.score_batch)
        cells = edit_cells(cases, layers, score_fn, pre_fn=scorer.pre, batch_size=edit_batch_size, progress=progress,
                           desc=f"evaluate {method}", method=method, **editor_kw)
    finally:
        model.train(was_training)
    result.rows, result.failures = cells.rows, cells.failures
    result.seconds = time.perf_counter() - t0
    result.cache_hits, result.cache_misses = scorer.cache.hits, scorer.cache.misses
    return result
