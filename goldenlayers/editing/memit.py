"""MEMIT: a batch of edits spread over a range of layers (docs/equations.md "Editing methods"; Meng et al. 2023).

The target z* of each case is optimised in the residual stream (block output) at the last layer L of the range
(editing.values with site "block"). Then, layer by layer in ascending order, on the model as updated so far:

    K   = k* of every case at layer l (mean over the templates as `key_averaging` says)  (n, d_ff)
    Rsd = (z* - z_current) / (number of layers left, l included)  (n, d_model), z at L for the bare prompt
    dW  = Rsd^T K (w C + K^T K)^-1                                 (w = mom2_update_weight)

`spread` is the shared layer loop; EMMET (editing.emmet) runs it with its own solve. For Gemma-2/3, whose MLP
output is normalised before the residual, the residual is spread on the down-proj output as the reference
code does for every architecture, so it only approximately reaches z*.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from goldenlayers.cases import EditCase
from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.hparams import MemitSettings
from goldenlayers.editing.keys import read_keys, template_weights
from goldenlayers.editing.registry import EditContext, EditMethod
from goldenlayers.editing.solve import KeyCov, memit_update
from goldenlayers.editing.values import ValueTargets

Solve = Callable[[torch.Tensor, torch.Tensor, KeyCov, int], torch.Tensor]  # (K (n,d_ff), Rsd (n,d), C, layer) -> dW


def spread(ctx: EditContext, cases: list[EditCase], targets: ValueTargets, delta: WeightDelta, solve: Solve) -> float:
    """Update every layer of ctx.layers in turn so that the bare prompts' z at the last layer moves to v*."""
    last = ctx.layers[-1]
    z_star = targets.v_star.double()  # (n, d_model)
    norms = []
    weights = template_weights(ctx.hp.context_templates, ctx.hp.key_averaging)
    for i, layer in enumerate(ctx.layers):
        keys = read_keys(ctx.model, ctx.tok, ctx.adapter, cases, ctx.templates, [layer], block_out_layer=last,
                         weights=weights)
        rsd = (z_star.to(keys.block_out) - keys.block_out) / (len(ctx.layers) - i)
        dw = solve(keys.k_star[layer], rsd, ctx.covs[layer], layer)
        delta.apply(layer, dw)
        norms.append(float(dw.norm()) ** 2)
    return sum(norms) ** 0.5


def apply_memit(ctx: EditContext, cases: list[EditCase], targets: ValueTargets, delta: WeightDelta) -> float:
    w = ctx.hp.mom2_update_weight
    return spread(ctx, cases, targets, delta, lambda K, R, cov, _layer: memit_update(K, R, cov, w))


MEMIT = EditMethod(
    name="memit", family="memit", site="block", batch=True, multi_layer=True, apply=apply_memit,
    summary="batch least-squares update spread over a layer range (w C + K K^T)",
    settings=MemitSettings,
)
