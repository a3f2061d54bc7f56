"""ROME: a rank-one update of one layer's down-proj (docs/equations.md "Editing methods"; Meng et al. 2022).

    dW = (v* - W k - b) (C^-1 k*)^T / (k^T C^-1 k*)

k is the key of the bare prompt, k* the mean key over the context templates, both read in the first forward
of the v* optimisation, v* the optimised down-proj output (editing.values); where the architecture normalises
the MLP output before the residual stream (Gemma 2/3), v* moved along its ray to the point nearest to W k + b
(`site_value`).
The edited layer maps k to v* exactly; keys C^-1-orthogonal to k* are unchanged. The
published code mixes k (numerator, denominator) with k* (direction), which occasionally gives exploding
"disabling" edits: R-ROME (editing.r_rome) uses k* everywhere.
"""

from __future__ import annotations

import torch

from goldenlayers.cases import EditCase
from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.hparams import RomeSettings
from goldenlayers.editing.registry import EditContext, EditMethod
from goldenlayers.editing.solve import rank_one_update
from goldenlayers.editing.values import ValueTargets


def layer_map(ctx: EditContext, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The down-proj of `layer` in float64: W (d_model, d_ff) and bias b (d_model,) (zeros without bias)."""
    W = ctx.adapter.weight(ctx.model, layer).detach().double()
    bias = getattr(ctx.adapter.down_proj_module(ctx.model, layer), "bias", None)
    b = bias.detach().double() if bias is not None else torch.zeros(W.shape[0], dtype=torch.float64, device=W.device)
    return W, b


MIN_LENGTH = 0.25  # the rescaled v* is never shorter than this share of W k + b (v* more than ~75 deg from it)


def site_value(adapter, current: torch.Tensor, v_star: torch.Tensor) -> torch.Tensor:
    """The value the edit writes for one case. Where the MLP output is normalised before the residual stream
    (`adapter.mlp_output_normalised`: Gemma 2/3's post-feedforward RMSNorm), the model reads only the direction
    of v* at the edited token, so every length gives the same v* loss; the optimiser's tangential steps only make
    v* longer (up to the norm clamp). The update also adds (k . C^-1 k*) / (k* . C^-1 k*) (v* - W k - b) to
    every other key's value, so v* is moved along its ray to the point nearest to the value it replaces
    (`current`, W k + b), at least MIN_LENGTH of its length: the same direction with the least change
    (docs/editing.md, "What limits Gemma"). Elsewhere v* as optimised."""
    if not adapter.mlp_output_normalised:
        return v_star
    v_star = v_star.to(current)
    scale = (v_star @ current) / (v_star @ v_star).clamp_min(1e-24)
    return v_star * scale.clamp_min(MIN_LENGTH * current.norm() / v_star.norm().clamp_min(1e-12))


def rank_one_edit(ctx: EditContext, cases: list[EditCase], targets: ValueTargets, delta: WeightDelta,
                  key: str) -> float:
    """Apply the rank-one update of one case; `key` is "k" (ROME) or "k*" (R-ROME) for the mapped key."""
    if len(cases) != 1:
        raise ValueError(f"a rank-one edit takes one case at a time, got {len(cases)}")
    (layer,) = ctx.layers
    if targets.site != "down_proj" or targets.layer != layer or targets.k_star is None:
        raise ValueError(f"a rank-one edit of layer {layer} needs v* and keys read at that layer's down-proj")
    k_star = targets.k_star[0]
    k = k_star if key == "k*" else targets.k_bare[0]
    W, b = layer_map(ctx, layer)
    current = W @ k.to(W) + b
    dw = rank_one_update(current, site_value(ctx.adapter, current, targets.v_star[0]), k, k_star, ctx.covs[layer])
    delta.apply(layer, dw)
    return float(dw.norm())


def apply_rome(ctx: EditContext, cases: list[EditCase], targets: ValueTargets, delta: WeightDelta) -> float:
    return rank_one_edit(ctx, cases, targets, delta, key="k")


ROME = EditMethod(
    name="rome", family="rome", site="down_proj", batch=False, multi_layer=False, apply=apply_rome,
    summary="rank-one update; maps the bare prompt's key k to v* (published k/k* mix)",
    settings=RomeSettings,
)
