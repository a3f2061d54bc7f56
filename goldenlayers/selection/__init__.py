"""Layer selection (REFERENCE.md section 2; paper sections 4-5): selectors that score every layer of a model on
a case set (LGA, CMA; brute force joins later) and the common LayerScores table they all return."""

from goldenlayers.selection.cma import cma_scores, cma_scores_windows, plot_trace, trace_case
from goldenlayers.selection.lga import LGASettings, lga_scores
from goldenlayers.selection.pick import Fences, LayerPick, pick_layer, tukey_fences
from goldenlayers.selection.table import COLUMNS, LayerScores

__all__ = [
    "COLUMNS",
    "Fences",
    "LGASettings",
    "LayerPick",
    "LayerScores",
    "cma_scores",
    "cma_scores_windows",
    "lga_scores",
    "pick_layer",
    "plot_trace",
    "trace_case",
    "tukey_fences",
]
