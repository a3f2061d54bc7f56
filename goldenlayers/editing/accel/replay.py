"""Run the blocks below the edited site once, then replay their output (a speed-up of the v* optimisation).

The v* delta enters at layer l (the down-proj output of block l, or the output of block l for MEMIT/EMMET), so
the blocks below it compute the same thing at every optimisation step. `FrozenPrefix` records the output of
the last frozen block during the first forward and, in later forwards, makes every frozen block return that
recorded output (rows picked by `row_idx`, so cases that stopped early can leave the batch) instead of
computing. The override is an instance `forward` attribute, so the model's own loop, masks, rotary embeddings
and the hooks registered on the blocks all run unchanged for any architecture; it is removed on exit.
Exact: the replayed tensor is the one the blocks produced for the same input rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from goldenlayers.models.hooks import first_tensor, replace_first

_MISSING = object()


class FrozenPrefix:
    """blocks[0:upto] of a decoder are computed once (`recording`) and replayed afterwards (`replaying`)."""

    def __init__(self, blocks: nn.ModuleList, upto: int):
        self.blocks, self.upto = list(blocks), upto
        self.output = None  # the last frozen block's output as it returned it (tensor or tuple)

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record (detached) the output of block upto-1 during the forwards inside."""
        if self.upto == 0:
            yield
            return

        def hook(_mod, _args, out):
            self.output = replace_first(out, first_tensor(out).detach())

        handle = self.blocks[self.upto - 1].register_forward_hook(hook, prepend=True)
        try:
            yield
        finally:
            handle.remove()

    def map_output(self, fn) -> None:
        """Replace the recorded output's tensor by fn(tensor), e.g. its positions in another layout
        (editing.accel.suffix); nothing to do when no block is frozen."""
        if self.output is not None:
            self.output = replace_first(self.output, fn(first_tensor(self.output)))

    @contextmanager
    def replaying(self, row_idx: torch.Tensor) -> Iterator[None]:
        """Inside, blocks[0:upto] return the recorded output restricted to rows `row_idx` (R',)."""
        if self.upto == 0:
            yield
            return
        if self.output is None:
            raise RuntimeError("FrozenPrefix.replaying needs a recorded forward first")
        hidden = first_tensor(self.output)
        out = replace_first(self.output, hidden[row_idx.to(hidden.device)])

        def forward(*_args, **_kwargs):
            return out

        saved = [blk.__dict__.get("forward", _MISSING) for blk in self.blocks[: self.upto]]
        try:
            for blk in self.blocks[: self.upto]:
                blk.forward = forward
            yield
        finally:
            for blk, old in zip(self.blocks[: self.upto], saved, strict=True):
                if old is _MISSING:
                    del blk.forward
                else:
                    blk.forward = old
