"""`evaluate()`: edit each case, measure it, restore, next case (REFERENCE.md section 4; DESIGN.md "The flow").

For every layer asked for and every case: apply the editor (a method name of goldenlayers.editing, imported only
when used, or a callable `editor(model, tok, case, layer) -> handle with .restore()`), measure the case's metrics
on the edited model, restore, and compare with the unedited model's results, which are computed once per case
before any edit (batched across cases) and cached (goldenlayers.evaluation.scorer). Without an editor the model
is measured as it is (post = pre, locality 1). A case whose pre-edit scoring, edit or post-edit scoring fails is
recorded in `failures` with its stage and reason and the run goes on; when a layer is given, the edited
down-proj weight must come back bitwise after restore, or the run stops (every later row would be wrong).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.metrics import METRICS
from goldenlayers.evaluation.result import EvalFailure, EvalResult, EvalRow
from goldenlayers.evaluation.scorer import CaseScorer, EvalSettings, PreCache
from goldenlayers.metric_names import GENERATED, expand_metrics


class WeightsNotRestoredError(RuntimeError):
    """An editor's restore() did not bring the edited weight back bitwise; the run cannot go on."""


def _editor(editor, hparams) -> tuple[Callable | None, str]:
    if editor is None:
        if hparams is not None:
            raise ValueError("hparams were given but no editor")
        return None, "none"
    if isinstance(editor, str):
        def run(model, tok, case, layer):
            from goldenlayers.editing import edit  # imported lazily: evaluation does not need the editors

            return edit(model, tok, case, method=editor, layer=layer, hparams=hparams)
        return run, editor
    if callable(editor):
        if hparams is not None:
            raise ValueError("hparams apply to a method name editor; bind them into your callable instead")
        return editor, getattr(editor, "__name__", type(editor).__name__)
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


def _edited_layer(handle, layer: int | None) -> int | None:
    if layer is not None:
        return layer
    layers = getattr(handle, "layers", None)
    return layers[0] if isinstance(layers, list) and len(layers) == 1 else None


def _weight(model, layer: int | None) -> torch.Tensor | None:
    """A copy of the down-proj weight of `layer` (None when there is no layer or no adapter for the model)."""
    if layer is None:
        return None
    from goldenlayers.models.adapters import UnknownArchitectureError, get_adapter

    try:
        adapter = get_adapter(model)
    except (UnknownArchitectureError, AttributeError):
        return None
    return adapter.weight_param(model, layer).detach().clone()


def evaluate(model, tok, cases: Iterable[EditCase], editor: str | Callable | None = None,
             layer: int | Sequence[int] | None = None, hparams=None, metrics: Sequence[str] = METRICS,
             batch_size: int = 16, fluency: bool = True, seed: int = 0, progress: bool = True,
             cache: PreCache | None = None, fluency_max_tokens: int = 100) -> EvalResult:
    """Evaluate `cases` on `model`: edited one at a time by `editor` at `layer` (an int, a list of layers, or None
    for the method's default), or unedited when editor is None. Returns an EvalResult (rows, failures, table()).

    metrics: any of METRICS, of goldenlayers.metric_names.ALL_METRICS, or a family name such as "counterfact-rome"
    (ROME's CounterFact metrics); fluency=False leaves out the metrics that sample text (fluency, generation
    entropy); seed: fluency sampling (per case); cache: share
    pre-edit results between runs on the same unedited model; fluency_max_tokens: total length of each sample.
    """
    cases = list(cases)
    chosen = tuple(m for m in expand_metrics(metrics) if fluency or m not in GENERATED)
    settings = EvalSettings(metrics=chosen, batch_size=batch_size, seed=seed, fluency_max_tokens=fluency_max_tokens)
    run_edit, method = _editor(editor, hparams)
    layers = _layers(layer)
    scorer = CaseScorer(model, tok, settings, cache)
    result = EvalResult(model=_model_label(model))
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        pre_errors = scorer.prepare(cases)
        for i, e in pre_errors.items():
            for lay in layers:
                result.failures.append(EvalFailure.of(cases[i], method, lay, "pre", e))
        todo = [(lay, c) for lay in layers for i, c in enumerate(cases) if i not in pre_errors]
        for lay, case in tqdm(todo, desc=f"evaluate {method}", disable=not progress):
            _one(scorer, run_edit, method, case, lay, result)
    finally:
        model.train(was_training)
    result.seconds = time.perf_counter() - t0
    result.cache_hits, result.cache_misses = scorer.cache.hits, scorer.cache.misses
    return result


def _one(scorer: CaseScorer, run_edit, method: str, case: EditCase, layer: int | None, result: EvalResult) -> None:
    pre = scorer.pre(case)
    if run_edit is None:
        post, row_layer = pre, layer
    else:
        before = _weight(scorer.model, layer)
        try:
            handle = run_edit(scorer.model, scorer.tok, case, layer)
        except Exception as e:
            result.failures.append(EvalFailure.of(case, method, layer, "edit", e))
            return
        if not callable(getattr(handle, "restore", None)):
            raise TypeError(f"the editor returned {type(handle).__name__}, which has no restore(); the model stays "
                            f"edited by case {case.case_id!r}")
        row_layer = _edited_layer(handle, layer)
        try:
            post = scorer.state(case)
        except Exception as e:
            result.failures.append(EvalFailure.of(case, method, row_layer, "score", e))
            return
        finally:
            handle.restore()
            if before is not None and not torch.equal(before, _weight(scorer.model, layer)):
                raise WeightsNotRestoredError(f"after case {case.case_id!r} the weight of layer {layer} was not "
                                              "restored bitwise by the editor's restore()")
    for metric, (pre_v, post_v) in scorer.compare(case, pre, post).items():
        result.rows.append(EvalRow(case.case_id, case.dataset, metric, pre_v, post_v, row_layer, method))
