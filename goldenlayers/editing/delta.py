"""WeightDelta: a reversible change of edited weights (docs/equations.md "Reversible edits").

Changes are keyed by (layer, site), a site being one the model's adapter declares ("mlp_out": the down-proj,
the default; "attn_out": the attention output projection). A WeightDelta keeps a copy of each weight it touches, taken before its first change, so `restore()` puts back
bitwise the tensors that were there. Updates are computed in float64 as (d_out, d_in) matrices and added as
`W_new = (W.double() + dW_total).to(W.dtype)`, so a layer touched several times by one delta rounds once.

Deltas of one model form a stack (docs/equations.md "Pitfalls": no silent accumulation, no silently restored model):
a new delta goes on top, and only the top one may be restored, so sequential edits undo in LIFO order.
Restoring twice, or applying to a restored delta, is an error rather than a no-op.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from goldenlayers.models.adapters import MLP_OUT, ArchAdapter

Key = tuple[int, str]  # (layer, site)

_STACKS: weakref.WeakKeyDictionary[nn.Module, list[WeightDelta]] = weakref.WeakKeyDictionary()


class EditOrderError(RuntimeError):
    """An edit was undone out of order, twice, or changed after being undone."""


def active_deltas(model: nn.Module) -> list[WeightDelta]:
    """The deltas currently applied to `model`, oldest first."""
    return list(_STACKS.get(model, []))


class WeightDelta:
    """Changes to weights of one model, keyed by (layer, site); undo with `restore()`.

    originals: {(layer, site): stored parameter tensor before this delta} (storage orientation, original dtype).
    updates: {(layer, site): dW (d_out, d_in) float64}, the total requested change per weight.
    """

    def __init__(self, model: nn.Module, adapter: ArchAdapter, label: str = "edit"):
        self.model, self.adapter, self.label = model, adapter, label
        self.originals: dict[Key, torch.Tensor] = {}
        self.updates: dict[Key, torch.Tensor] = {}
        self.restored = False

    def __repr__(self) -> str:
        state = "restored" if self.restored else "applied"
        where = [f"{lay}:{site}" if site != MLP_OUT else str(lay) for lay, site in sorted(self.updates)]
        return f"WeightDelta({self.label!r}, layers=[{', '.join(where)}], {state})"

    @property
    def layers(self) -> list[int]:
        return sorted({lay for lay, _ in self.updates})

    @property
    def keys(self) -> list[Key]:
        """The (layer, site) pairs this delta changed, sorted."""
        return sorted(self.updates)

    def apply(self, layer: int, dw: torch.Tensor, site: str = MLP_OUT) -> None:
        """Add dW (d_out, d_in) to the weight of `site` at `layer`; the first change pushes this delta on the stack."""
        if self.restored:
            raise EditOrderError(f"{self!r} was restored; make a new edit instead of reusing it")
        layer = self.adapter.check_layer(self.model, layer)
        param = self.adapter.site_param(self.model, layer, site)
        d_out, d_in = self.adapter.site_weight(self.model, layer, site).shape
        where = f"layer {layer}" if site == MLP_OUT else f"layer {layer} ({site})"
        if tuple(dw.shape) != (d_out, d_in):
            raise ValueError(f"update for {where} has shape {tuple(dw.shape)}, expected {(d_out, d_in)}")
        if not torch.isfinite(dw).all():
            raise FloatingPointError(f"update for {where} is not finite (NaN or inf); weights left unchanged")
        stack = _STACKS.setdefault(self.model, [])
        if not self.originals:
            stack.append(self)
        elif not stack or stack[-1] is not self:
            raise EditOrderError(f"{self!r} is not the latest edit of this model; it can no longer change")
        key = (layer, site)
        if key not in self.originals:
            self.originals[key] = param.detach().clone()
            self.updates[key] = torch.zeros(d_out, d_in, dtype=torch.float64, device=param.device)
        self.updates[key] += dw.to(device=param.device, dtype=torch.float64)
        base = self.adapter.site_to_storage(self.updates[key], site) + self.originals[key].double()
        with torch.no_grad():
            param.copy_(base.to(param.dtype))

    def change(self, layer: int, site: str = MLP_OUT) -> torch.Tensor:
        """The total requested change dW (d_out, d_in) float64 of one weight (KeyError if it has none)."""
        return self.updates[(layer, site)]

    def norm(self, layer: int | None = None, site: str | None = None) -> float:
        """Frobenius norm of the requested update of one layer (its sites, or one site), or of all together."""
        mats = [m for (lay, s), m in self.updates.items()
                if (layer is None or lay == layer) and (site is None or s == site)]
        return float(torch.sqrt(sum((m.square().sum() for m in mats), torch.tensor(0.0, dtype=torch.float64))))

    def restore(self) -> None:
        """Put back bitwise the weights this delta changed. Only the latest applied delta may be restored."""
        if self.restored:
            raise EditOrderError(f"{self!r} was already restored")
        stack = _STACKS.get(self.model, [])
        if self.originals:
            if not stack or stack[-1] is not self:
                later = [d for d in stack[stack.index(self) + 1:]] if self in stack else []
                raise EditOrderError(f"restore the later edits first (LIFO order): {later}")
            with torch.no_grad():
                for (layer, site), orig in self.originals.items():
                    self.adapter.site_param(self.model, layer, site).copy_(orig)
            stack.pop()
        self.restored = True
        self.originals.clear()
