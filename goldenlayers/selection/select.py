"""`select_layer`: run one registered layer selector on a case set and choose its layer (paper sections 4-5;
docs/selection.md "Choosing a layer: select_layer").

The selector is looked up in goldenlayers.registry.SELECTORS (goldenlayers.selection.registry): its settings class
validates the settings, its scoring function scores every layer into a LayerScores table, and its `choose` picks the
layer (LGA: the Tukey-fenced argmax, paper Appendix A; the race: the layer its last round kept; otherwise the
argmax). No selector is named here: a selector registered anywhere, with one `register_selector` line, runs
through it like the built-in ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from goldenlayers.cases import EditCase
from goldenlayers.selection.pick import LayerPick
from goldenlayers.selection.registry import SelectionInput, get_selector
from goldenlayers.selection.table import LayerScores


@dataclass
class Selection:
    """A selector's table and its chosen layer (`pick` holds the Tukey fences for LGA; None otherwise)."""

    selector: str
    table: LayerScores
    layer: int
    seconds: float
    pick: LayerPick | None = None


def select_layer(model, tok, cases: Sequence[EditCase], method: str = "race", *, settings=None,
                 editor: str = "r-rome", hparams=None, layers: Sequence[int] | None = None, metric: str = "rewrite",
                 batch_size: int = 16, progress: bool = True, model_name: str | None = None,
                 metrics: Sequence[str] | None = None, overall_spec=None, stats=None, seed: int = 0,
                 **overrides) -> Selection:
    """Score every layer with the selector registered as `method` (race, lga and its readings such as lga-neg,
    cma, bruteforce, or any registered one; UnknownNameError names the closest) on `cases` and choose one.

    settings: the selector's settings (its settings class, or a dict), updated by keyword `overrides` (e.g. k=None
    for LGA without Tukey fences, window=1 for CMA). The race and brute force edit with `editor`, its `hparams`
    and key statistics `stats` ({layer: C}, None for C = I), `batch_size` cases at a time (LGA's batch too);
    brute force measures `metrics` (default: the sweep's, without fluency) and picks the golden layer of `metric`
    ("overall": of the Overall of the layer means, with `overall_spec`)."""
    entry = get_selector(method)
    s = entry.make_settings(settings, **overrides)
    cases = list(cases)
    if not cases:
        raise ValueError("select_layer needs at least one case")
    start = time.perf_counter()
    inp = SelectionInput(model, tok, cases, layers=list(layers) if layers is not None else None,
                         model_name=model_name, progress=progress, batch_size=batch_size, select_batch=batch_size,
                         seed=seed, editor=editor, hparams=hparams, stats=stats, metric=metric,
                         metrics=tuple(metrics) if metrics is not None else None, overall_spec=overall_spec)
    table = entry.scores_fn(inp, s)
    layer, pick = entry.choose_layer(table, s)
    return Selection(entry.name, table, layer, time.perf_counter() - start, pick)
