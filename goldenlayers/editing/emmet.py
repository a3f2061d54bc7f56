"""EMMET: MEMIT's layer loop with an equality-constrained batch solve (docs/equations.md "Editing methods"; Gupta et al. 2024).

    dW = Rsd^T (K C0^-1 K^T + lambda_e I)^-1 K C0^-1,    C0 = w C   (w = mom2_update_weight)

so that W_new k_i = W k_i + Rsd_i for every case of the batch (exactly when lambda_e = 0). The ridge lambda_e
(`emmet_lambda`, 0.1) follows `emmet_ridge`: "batch>1" adds it only for batches of more than one case, as the
official unified-model-editing code does; "always" adds it to every batch, as EasyEdit does. With one case and
no ridge the update is R-ROME's closed form: Rsd (C^-1 k*)^T / (k*^T C^-1 k*).
"""

from __future__ import annotations

from goldenlayers.cases import EditCase
from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.hparams import EmmetSettings
from goldenlayers.editing.memit import spread
from goldenlayers.editing.registry import EditContext, EditMethod
from goldenlayers.editing.solve import emmet_update
from goldenlayers.editing.values import ValueTargets


def ridge_for(hp: EmmetSettings, n_cases: int) -> float:
    """lambda_e for a batch of n_cases under the chosen reference behaviour."""
    return hp.emmet_lambda if hp.emmet_ridge == "always" or n_cases > 1 else 0.0


def apply_emmet(ctx: EditContext, cases: list[EditCase], targets: ValueTargets, delta: WeightDelta) -> float:
    w, ridge = ctx.hp.mom2_update_weight, ridge_for(ctx.hp, len(cases))
    return spread(ctx, cases, targets, delta, lambda K, R, cov, _layer: emmet_update(K, R, cov, w, ridge))


EMMET = EditMethod(
    name="emmet", family="emmet", site="block", batch=True, multi_layer=True, apply=apply_emmet,
    summary="batch update with equality constraints (every edited key maps to its target)",
    settings=EmmetSettings,
)
