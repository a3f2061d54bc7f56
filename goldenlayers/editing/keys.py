"""Keys at the fact token (docs/equations.md "Keys k and k*" and the ROME/R-ROME keys).

One no-grad forward over every (case, template) row of a batch of cases records, at each requested layer, the
down-proj input at the row's fact token; k* of a case is the mean over its templates, k (ROME's key) is the
key of the bare prompt, template "{}" (index 0). The mean over templates is weighted by `template_weights`:
equal weights (ROME's compute_u, "per_template") or the mean of group means (MEMIT/EMMET's compute_ks, "grouped":
the bare prompt is a group of its own, each (length, count) group of generated templates another). The same forward can also read the block output at one layer
at the bare prompt's fact token (MEMIT's current z). Everything is read from the hooks at positions given by
the rows, never from the padding side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from goldenlayers.cases import EditCase
from goldenlayers.editing.batch import Rows, build_rows
from goldenlayers.models.adapters import ArchAdapter
from goldenlayers.models.hooks import record
from goldenlayers.models.loader import model_device
from goldenlayers.text import model_max_length


@dataclass
class KeyReadout:
    """k_star, k_bare: {layer: (n_cases, d_ff) float64}. block_out: (n_cases, d_model) float64 or None."""

    k_star: dict[int, torch.Tensor]
    k_bare: dict[int, torch.Tensor]
    block_out: torch.Tensor | None


def template_weights(groups: list[tuple[int, int]], averaging: str = "per_template") -> torch.Tensor:
    """Weight of each template ("{}" first, then the generated ones in group order) in k*: (1 + sum count,)
    float64 summing to 1. "per_template": all equal; "grouped": 1 / #groups spread evenly inside each group,
    "{}" being a group of its own and groups of count 0 left out."""
    sizes = [1] + [count for _, count in groups if count > 0]
    if averaging == "per_template":
        return torch.full((sum(sizes),), 1.0 / sum(sizes), dtype=torch.float64)
    if averaging != "grouped":
        raise ValueError(f"key_averaging must be 'per_template' or 'grouped', got {averaging!r}")
    return torch.cat([torch.full((s,), 1.0 / (len(sizes) * s), dtype=torch.float64) for s in sizes])


def _per_case(x: torch.Tensor, case: torch.Tensor, n: int, w: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of rows x (R, d) per case index (R,) -> (n, d) float64; weighted by w (R,) when given (the weights
    of each case's rows summing to 1)."""
    x = x.double()
    if w is not None:
        return torch.zeros(n, x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, case, x * w[:, None])
    total = torch.zeros(n, x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, case, x)
    count = torch.bincount(case, minlength=n).to(x)
    return total / count[:, None]


def fact_keys(rows: Rows, x: torch.Tensor, n: int, weights: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """From down-proj inputs x (R, T, d_ff) of `rows`: k* (mean over each case's template rows, KL rows left
    out, weighted by `weights` (n_templates,) from `template_weights` when given) and the bare prompt's key,
    both (n, d_ff) float64."""
    x = x.detach()
    at_fact = x[torch.arange(x.shape[0], device=x.device), rows.fact.to(x.device)]  # (R, d_ff)
    templated = (rows.template >= 0).nonzero().squeeze(1).to(x.device)  # KL and preservation rows left out
    bare = (rows.template == 0).nonzero().squeeze(1).to(x.device)
    w = None if weights is None else weights.to(x.device)[rows.template.to(x.device)[templated]]
    k_star = _per_case(at_fact[templated], rows.case.to(x.device)[templated], n, w)
    return k_star, at_fact[bare].double()


@torch.no_grad()
def read_keys(model: nn.Module, tok, adapter: ArchAdapter, cases: list[EditCase], templates: list[str],
              layers: list[int], block_out_layer: int | None = None, weights: torch.Tensor | None = None
              ) -> KeyReadout:
    """k* and k of every case at every layer in `layers`, and optionally the bare prompt's block output.
    weights: per-template weights of k* (`template_weights`); None: all templates equal."""
    if templates[0] != "{}":
        raise ValueError("the first context template must be the bare prompt '{}'")
    rows = build_rows(tok, cases, templates, with_target=False, max_length=model_max_length(model))
    modules = {f"k{layer}": adapter.down_proj_module(model, layer) for layer in layers}
    if block_out_layer is not None:
        modules["z"] = adapter.block(model, block_out_layer)
    n = len(cases)
    with record({k: m for k, m in modules.items() if k != "z"}, inputs=True, outputs=False) as rec_in, \
            record({k: m for k, m in modules.items() if k == "z"}, inputs=False, outputs=True) as rec_out:
        dev = model_device(model)
        model(input_ids=rows.input_ids.to(dev), attention_mask=rows.attention_mask.to(dev), use_cache=False)
    bare = (rows.template == 0).nonzero().squeeze(1)
    k_star, k_bare = {}, {}
    for layer in layers:
        k_star[layer], k_bare[layer] = fact_keys(rows, rows.per_token(rec_in[f"k{layer}"]["in"]), n, weights)
    block_out = None
    if block_out_layer is not None:
        y = rows.per_token(rec_out["z"]["out"])
        block_out = y[bare.to(y.device), rows.fact[bare].to(y.device)].double()
    return KeyReadout(k_star, k_bare, block_out)
