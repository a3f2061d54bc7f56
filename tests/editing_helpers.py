"""Helpers shared by the editing tests: a tiny model with its tokenizer and adapter, a random SPD key covariance,
and a down-projection as the affine map W k + b in float64 (to check the closed forms of docs/equations.md "Editing methods")."""

import torch

from goldenlayers.models.adapters import get_adapter
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer


def setup_tiny(arch: str, seed: int = 1):
    model = tiny_model(arch, seed=seed)
    tok = tiny_tokenizer(add_bos=arch.startswith("gemma") or arch in ("llama", "mistral"))
    return model, tok, get_adapter(model)


def random_spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, 3 * d, generator=g, dtype=torch.float64)
    return a @ a.T / (3 * d) + 0.1 * torch.eye(d, dtype=torch.float64)


def affine(adapter, model, layer):
    W = adapter.weight(model, layer).detach().double()
    b = getattr(adapter.down_proj_module(model, layer), "bias", None)
    return W, (b.detach().double() if b is not None else torch.zeros(W.shape[0], dtype=torch.float64))
