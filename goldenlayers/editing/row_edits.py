"""Per-row edits: one forward of a batch scores many different edits at once (docs/evaluation.md "Scoring many
edits in one forward").

An edit here is what a `WeightDelta` records, {(layer, site): dW (d_out, d_in)}. Inside `row_edits(model, adapter,
edits, rows)`, row b of every forward of `model` sees edit `edits[rows[b]]` (rows[b] = -1: the unedited model):
a forward hook on each edited site module adds x_b @ dW^T to that row's output, x_b being the module's input. The
weights are never written, so nothing needs restoring. This computes what the edited weight computes,
(W + dW) x = W x + dW x, up to float rounding: an edited weight rounds W + dW once to the weight's dtype, here
W x and dW x are rounded separately (relative differences of the order of the dtype's epsilon; argmax predictions
and sampled texts agree except at near-ties, tests/test_row_edits.py).

This is what lets the cell loop score a batch of cells in a few forwards instead of one forward (and, for fluency,
one generation) per cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from goldenlayers.models.adapters import ArchAdapter

Edit = Mapping[tuple[int, str], torch.Tensor]  # {(layer, site): dW (d_out, d_in)}


def _hook(parts: list[tuple[torch.Tensor, torch.Tensor]], n_rows: int):
    def add(module, args, output):
        x, out = args[0], output
        if x.shape[0] != n_rows and x.dim() == 2 and x.shape[0] % n_rows == 0:
            # the block flattened (B, T, d) to (B*T, d) row-major before the module (OPT does): rows back apart
            x, out = x.view(n_rows, -1, x.shape[-1]), out.view(n_rows, -1, out.shape[-1])
        if x.shape[0] != n_rows or out.shape[0] != n_rows:
            raise RuntimeError(f"row_edits: the edited module saw a batch of {x.shape[0]} rows, expected {n_rows} "
                               "(one edit index per row of the forward)")
        out = out.clone()
        for idx, dw in parts:  # idx: the rows of one edit; dw: its (d_out, d_in) change in the module's dtype
            out.index_add_(0, idx, x.index_select(0, idx) @ dw.T)
        return out.view(output.shape)
    return add


@contextmanager
def row_edits(model: nn.Module, adapter: ArchAdapter, edits: Sequence[Edit], rows: Sequence[int]):
    """Within the block, row b of each forward of `model` runs with edit `edits[rows[b]]` (-1: none); see the module
    docstring. Every forward inside must have exactly len(rows) rows."""
    n = len(rows)
    by_key: dict[tuple[int, str], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for j in sorted(set(rows) - {-1}):
        if not 0 <= j < len(edits):
            raise IndexError(f"row edit index {j} outside 0..{len(edits) - 1}")
        for (layer, site), dw in edits[j].items():
            param = adapter.site_param(model, layer, site)
            idx = torch.tensor([b for b in range(n) if rows[b] == j], device=param.device)
            by_key.setdefault((layer, site), []).append((idx, dw.to(device=param.device, dtype=param.dtype)))
    handles = [adapter.site_module(model, layer, site).register_forward_hook(_hook(parts, n))
               for (layer, site), parts in by_key.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
