"""Layer selection (docs/equations.md "Layer selection"; paper sections 4-5; docs/selection.md): selectors that
score every layer of a model on a case set (race, LGA and its readings, CMA, brute force), the common LayerScores
table they all return, and `select_layer` (select.py), the entry point that runs any registered selector and
chooses a layer. Every selector is registered below, one line each (goldenlayers.registry.SELECTORS,
goldenlayers.selection.registry: the calling convention)."""

from goldenlayers.selection.bruteforce import bruteforce_scores
from goldenlayers.selection.cma import (
    CMASettings,
    cma_scores,
    cma_scores_windows,
    cma_select,
    plot_trace,
    trace_case,
)
from goldenlayers.selection.lga import LGA_READINGS, LGASettings, lga_pick, lga_scores, lga_select
from goldenlayers.selection.pick import Fences, LayerPick, pick_layer, tukey_fences
from goldenlayers.selection.registry import (
    SelectionInput,
    Selector,
    available_selectors,
    get_selector,
    register_selector,
)
from goldenlayers.selection.select import Selection, select_layer
from goldenlayers.selection.table import COLUMNS, LayerScores

register_selector(Selector("race", "Race", "successive halving of real edits on the proxy set: every layer on a "
                           "few cases with few v* steps, then the best third with more, within 3 % of a test sweep "
                           "(docs/selection.md)", "goldenlayers.selection.race:race_select",
                           "goldenlayers.selection.race:RaceSettings", edits=True))
register_selector(Selector("lga", "LGA", "Layer Gradient Analysis: mean inner product of the gradients of the old "
                           "and new answers' losses at each layer, Tukey-fenced argmax (paper section 5.1)",
                           lga_select, LGASettings, choose=lga_pick, variants=LGA_READINGS))
register_selector(Selector("cma", "CMA", "causal tracing as ROME does it: indirect effect of restoring the MLP "
                           "output at the last subject token (paper section 5.2)", cma_select, CMASettings))
register_selector(Selector("bruteforce", "BF", "edit every case at every layer and score it: the golden layer of "
                           "the sweep (exact, expensive; paper section 4)",
                           "goldenlayers.selection.bruteforce:bruteforce_select", edits=True), aliases=("golden",))

__all__ = [
    "COLUMNS",
    "CMASettings",
    "Fences",
    "LGASettings",
    "LGA_READINGS",
    "LayerPick",
    "LayerScores",
    "Selection",
    "SelectionInput",
    "Selector",
    "available_selectors",
    "bruteforce_scores",
    "cma_scores",
    "cma_scores_windows",
    "cma_select",
    "get_selector",
    "lga_pick",
    "lga_scores",
    "lga_select",
    "pick_layer",
    "plot_trace",
    "register_selector",
    "select_layer",
    "tukey_fences",
    "trace_case",
]
