"""R-ROME: ROME with k* everywhere (docs/equations.md "Editing methods"; Gupta et al. 2024, "Rebuilding ROME").

    dW = (v* - W k* - b) (C^-1 k*)^T / (k*^T C^-1 k*)

W k* + b is the mean over the context templates of the down-proj output at the fact token (the down-proj is
affine), computed here from W and k* in float64. The edited layer maps k* to v* exactly; ROME's k / k*
mismatch, the cause of its occasional exploding edits, is gone.
"""

from __future__ import annotations

from goldenlayers.cases import EditCase
from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.hparams import RomeSettings
from goldenlayers.editing.registry import EditContext, EditMethod
from goldenlayers.editing.rome import rank_one_edit
from goldenlayers.editing.values import ValueTargets


def apply_r_rome(ctx: EditContext, cases: list[EditCase], targets: ValueTargets, delta: WeightDelta) -> float:
    return rank_one_edit(ctx, cases, targets, delta, key="k*")


R_ROME = EditMethod(
    name="r-rome", family="rome", site="down_proj", batch=False, multi_layer=False, apply=apply_r_rome,
    summary="rank-one update that maps the template-averaged key k* to v* (ROME without the k/k* mix)",
    settings=RomeSettings,
)
