"""Suffix replay: after the first v* forward, compute only the positions from the fact token on (a speed-up of
the v* optimisation, docs/editing.md "v*"; same loss, same optimum).

The v* delta enters at the fact token of every row, and attention is causal, so the positions before the fact
token compute the same thing at every optimisation step, in every layer. The first forward of
`optimise_values` runs the whole rows and keeps the model's key/value cache; every later step feeds each row
only its tokens from the fact token on (its "suffix"), right-padded, with the cached keys and values of the
first forward as the past, masked to the positions before that row's fact token, and position ids that
continue the row's own positions. The fact token is then suffix position 0 of every row. All the positions the
loss reads (the target tokens' predictions, the KL position, the preservation prompts' last tokens) lie at or
after the fact token, so the loss is the same function of delta; only the floating-point rounding of the
smaller matrix products differs. A suffix also ends at the last position the loss reads (attention is causal,
so later ones cannot change it): the last target token of a templated row, which predicts nothing, and the
words after the subject in a KL row ("is a"; its KL is read at the fact token) are left out. On a prompt of ~20
tokens whose fact token is ~7 tokens from the end this cuts the matrix work of each step about 3x.

Used when the first forward's cache is a plain `DynamicCache` of full-attention layers (every causal LM the
adapters cover except those with sliding-window layers, e.g. Gemma 2/3, which keep the full forward), and by
default ("auto", `suffix_wanted`) where the matrix work dominates a step (CPUs, GPUs with CUDA graphs);
`ExecOptions.suffix_replay` True/False forces it on/off.

One transformers internal is used, in `_cache_holding` only: a later step's cache is a `DynamicCache` whose layers
are given the recorded keys and values as they are (`DynamicLayer.lazy_initialization`, then its `keys` and
`values` attributes). The public ways to fill a cache (`DynamicCache(ddp_cache_data=...)`, `cache.update`)
concatenate onto an empty tensor, i.e. copy every layer's keys and values at every step. Everything else reads
the public `DynamicCache.layers` and the layers' `keys` / `values`. `suffix_cache_supported` checks that the
layer API is there (transformers 5.x) and turns the replay off otherwise.
"""

from __future__ import annotations

import torch

from goldenlayers.editing.batch import Rows
from goldenlayers.models.kv_cache import cache_kwargs


def suffix_wanted(setting: bool | str, model, graphs: bool = False) -> bool:
    """`ExecOptions.suffix_replay` resolved for `model`: "auto" uses it where the matrix work dominates a v* step:
    on a CPU, on a GPU when the steps are replayed as a CUDA graph (`graphs`, editing.accel.graphs), and for float32
    models with full-float32 matmuls; not for bfloat16/float16 models or TF32 matmuls on a GPU without graphs,
    where the extra cache and mask kernels' launches cost more than the smaller products save
    (docs/benchmarks.md)."""
    if setting != "auto":
        return bool(setting)
    p = next(model.parameters())
    if p.device.type == "cpu" or graphs:
        return True
    return p.dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest"


def suffix_cache_supported(cache) -> bool:
    """True when `cache` (the key/value cache a forward returned) is a DynamicCache whose layers are plain full-attention
    DynamicLayers holding keys and values."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # transformers without the Cache-layer API
        return False
    layers = getattr(cache, "layers", None)
    return (isinstance(cache, DynamicCache) and bool(layers)
            and hasattr(DynamicLayer, "lazy_initialization")
            and all(type(layer) is DynamicLayer and getattr(layer, "is_initialized", False)
                    and getattr(layer, "keys", None) is not None and layer.keys.numel() > 0 for layer in layers))


class SuffixRows:
    """The suffix layout of `rows` (see the module docstring), built from the first forward's `cache`."""

    def __init__(self, rows: Rows, cache, pad_id: int):
        R, T = rows.input_ids.shape
        dev = rows.input_ids.device
        start = rows.fact  # (R,) the fact token opens every suffix
        pos = torch.arange(T, device=dev)
        last_read = torch.maximum(torch.where(rows.predict_mask, pos, -1).amax(1), rows.kl_at)  # (R,)
        length = last_read + 1 - start  # (R,) suffix lengths, >= 1: nothing after the last position read
        S = int(length.max())
        j = torch.arange(S, device=dev)
        valid = j[None] < length[:, None]  # (R, S)
        self.index = (start[:, None] + j[None]).clamp(max=T - 1)  # (R, S) position of each suffix slot
        pad = torch.full_like(self.index, pad_id)
        self.rows = Rows(
            input_ids=torch.where(valid, rows.input_ids.gather(1, self.index), pad),
            attention_mask=valid.long(),
            fact=torch.zeros_like(start),
            case=rows.case,
            template=rows.template,
            predict_mask=rows.predict_mask.gather(1, self.index) & valid,
            next_ids=rows.next_ids.gather(1, self.index),
            kl_at=rows.kl_at - start,
        )
        past_mask = (pos[None] < start[:, None]).long()  # (R, T)
        self.mask = torch.cat([past_mask, self.rows.attention_mask], dim=1)  # (R, T + S)
        # (R, heads, T, head_dim) per layer; detached: the first forward ran with delta in the graph (at zero)
        self.kv = [(layer.keys.detach(), layer.values.detach()) for layer in cache.layers]
        self.n_rows = R

    def gather_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(R, T, d) per-position states of the full rows -> (R, S, d) of the suffix slots."""
        idx = self.index.to(hidden.device)
        return hidden.gather(1, idx[..., None].expand(-1, -1, hidden.shape[-1]))

    def inputs(self, model, row_idx: torch.Tensor, rows: Rows) -> dict:
        """The model's keyword arguments for the forward of the suffix rows `row_idx` (`rows`: those rows, as
        `self.rows.index(row_idx)` gives them), with a new cache object.
        While every row is in the batch the cached tensors are used as they are (the forward appends the suffix
        to a new tensor, so they stay as recorded); once cases have left, their rows are dropped. Never waits on
        the GPU (a CUDA graph records it, editing.accel.graphs)."""
        every = len(row_idx) == self.n_rows  # row_idx is ascending, so this is arange(n_rows)
        pick = (lambda x: x) if every else (lambda x: x[row_idx.to(x.device)])
        cache = _cache_holding([(pick(k), pick(v)) for k, v in self.kv])
        return dict(input_ids=rows.input_ids, attention_mask=pick(self.mask), position_ids=pick(self.index),
                    use_cache=True, **cache_kwargs(model, cache))


def _cache_holding(kv: list[tuple[torch.Tensor, torch.Tensor]]):
    """A DynamicCache of full-attention layers holding the tensors `kv` (one (keys, values) pair per layer) as they
    are, without a copy (the one transformers internal of this package: see the module docstring). The forward
    appends the new positions into new tensors, so the given ones stay as they are."""
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache(ddp_cache_data=[(None, None)] * len(kv))  # empty full-attention layers
    for layer, (k, v) in zip(cache.layers, kv, strict=True):
        layer.lazy_initialization(k, v)
        layer.keys, layer.values = k, v
    return cache
