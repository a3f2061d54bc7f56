"""Layer selection (paper sections 4-5; docs/selection.md): selectors that score every layer of a model on a case
set (LGA, CMA, brute force), the common LayerScores table they all return, and `select_layer`, the entry point that
runs one of them and chooses a layer."""

from goldenlayers.selection.bruteforce import bruteforce_scores
from goldenlayers.selection.cma import cma_scores, cma_scores_windows, plot_trace, trace_case
from goldenlayers.selection.compare import SELECTORS, Selection, select_layer
from goldenlayers.selection.lga import LGASettings, lga_scores
from goldenlayers.selection.pick import Fences, LayerPick, pick_layer, tukey_fences
from goldenlayers.selection.table import COLUMNS, LayerScores

__all__ = [
    "COLUMNS",
    "Fences",
    "LGASettings",
    "LayerPick",
    "LayerScores",
    "SELECTORS",
    "Selection",
    "bruteforce_scores",
    "cma_scores",
    "cma_scores_windows",
    "lga_scores",
    "pick_layer",
    "plot_trace",
    "select_layer",
    "trace_case",
    "tukey_fences",
]
