"""One-kernel tanh-GELU for the editing forwards (a speed-up of the v* optimisation, REFERENCE.md section 3 "v*";
same function).

GPT-2's `gelu_new` (transformers' `NewGELUActivation`, also used by GPT-J, GPT-Neo, CodeGen and the embedded
default models) is written as eight elementwise tensor operations:

    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))

so every MLP of every forward and backward pass launches a dozen kernels, each one a pass over the
(tokens, d_ff) activations. `torch.nn.functional.gelu(x, approximate="tanh")` evaluates the same formula in one
kernel, in float32 arithmetic. On the GPT-2 XL shape (H100, float32) it shortens a v* step from 36.0 to 34.3 ms
and an R-ROME edit by about 60 ms (docs/benchmarks.md).

`fused_activations(model)` swaps it in (an instance `forward`, removed on exit, so hooks and the model's own code
run unchanged) for float32/float64 models, where the two differ only in float rounding (a few units in the
last place). Half-precision models keep their own activation: there the fused kernel would round once instead
of after every operation, a visibly different function from the one the model is evaluated with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


@contextmanager
def fused_activations(model: nn.Module) -> Iterator[int]:
    """Inside, every `NewGELUActivation` of a float32/float64 `model` runs as one tanh-GELU kernel; yields how many
    activation modules were swapped."""
    try:
        from transformers.activations import NewGELUActivation
    except ImportError:  # transformers without the activation classes: nothing to swap
        yield 0
        return
    p = next(model.parameters(), None)
    full = p is not None and p.dtype in (torch.float32, torch.float64)
    mods = [m for m in model.modules() if full and type(m) is NewGELUActivation and "forward" not in m.__dict__]
    for m in mods:
        m.forward = _gelu_tanh
    try:
        yield len(mods)
    finally:
        for m in mods:
            del m.forward
