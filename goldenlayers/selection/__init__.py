"""Layer selection (docs/equations.md "Layer selection"; paper sections 4-5; docs/selection.md): selectors that
score every layer of a model on a case set (race, LGA and its readings, CMA, brute force), the common LayerScores
table they all return, and `select_layer`, the entry point that runs one of them and chooses a layer. Every
selector is registered below (goldenlayers.registry.SELECTORS, goldenlayers.selection.registry)."""

from goldenlayers.selection.bruteforce import bruteforce_scores
from goldenlayers.selection.cma import CMASettings, cma_scores, cma_scores_windows, plot_trace, trace_case
from goldenlayers.selection.compare import SELECTORS, Selection, select_layer
from goldenlayers.selection.lga import LGASettings, lga_scores
from goldenlayers.selection.pick import Fences, LayerPick, pick_layer, tukey_fences
from goldenlayers.selection.registry import Selector, available_selectors, get_selector, register_selector
from goldenlayers.selection.table import COLUMNS, LayerScores

register_selector(Selector("race", "Race", "successive halving of real edits on the proxy set: every layer on a "
                           "few cases with few v* steps, then the best third with more, within 3 % of a test sweep "
                           "(docs/selection.md)", "goldenlayers.selection.race:race_scores",
                           "goldenlayers.selection.race:RaceSettings"))
register_selector(Selector("lga", "LGA", "Layer Gradient Analysis: mean inner product of the gradients of the old "
                           "and new answers' losses at each layer, Tukey-fenced argmax (paper section 5.1)",
                           lga_scores, LGASettings))
register_selector(Selector("cma", "CMA", "causal tracing as ROME does it: indirect effect of restoring the MLP "
                           "output at the last subject token (paper section 5.2)", cma_scores, CMASettings))
register_selector(Selector("bruteforce", "BF", "edit every case at every layer and score it: the golden layer of "
                           "the sweep (exact, expensive; paper section 4)",
                           "goldenlayers.selection.bruteforce:bruteforce_scores"), aliases=("golden",))

__all__ = [
    "COLUMNS",
    "CMASettings",
    "Fences",
    "LGASettings",
    "LayerPick",
    "LayerScores",
    "SELECTORS",
    "Selection",
    "Selector",
    "available_selectors",
    "bruteforce_scores",
    "cma_scores",
    "cma_scores_windows",
    "get_selector",
    "lga_scores",
    "pick_layer",
    "plot_trace",
    "register_selector",
    "select_layer",
    "tukey_fences",
    "trace_case",
]
