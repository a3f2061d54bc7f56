"""Faster kernels for the editing forwards, computing the same function (a speed-up of the v* optimisation,
docs/editing.md "v*"). `editing_kernels(model)` applies both swaps below for the duration of a block, as
instance `forward` attributes removed on exit, so hooks and the model's own code run unchanged.

One-kernel tanh-GELU. GPT-2's `gelu_new` (transformers' `NewGELUActivation`, also used by GPT-J, GPT-Neo,
CodeGen and the embedded default models) is written as eight elementwise tensor operations,

    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))

so every MLP launches a dozen kernels per forward and backward, each a pass over the (tokens, d_ff) activations.
`F.gelu(x, approximate="tanh")` evaluates the same formula in one kernel. Swapped for float32/float64 models
only, where the two differ by float rounding (a few units in the last place); in half precision the fused
kernel would round once instead of after every operation, a visibly different function from the one the model
is evaluated with.

Bias added after the product. A linear layer with a bias (GPT-2's `Conv1D`, `nn.Linear`) runs as `addmm`, which
on a GPU uses cuBLASLt's fused-bias GEMMs. For float32 on an H100 with the few hundred token rows of a v* step
(suffix replay), those are 9-44% slower than a plain cuBLAS product followed by a bias add (GPT-2 XL shapes,
benchmarks/bench_kernels.py, docs/benchmarks.md); with 512 rows the fused kernel wins. So on a CUDA device, for float32 models with full float32
products, when the steps are replayed as CUDA graphs, a product over at most `SPLIT_BIAS_MAX_ROWS` rows is
computed as `mm` then `add_` (the same float32 sum, rounded once more at most), larger ones as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
import torch.nn.functional as F
from torch import nn

SPLIT_BIAS_MAX_ROWS = 256  # measured: faster split up to 242 rows, slower at 512 (docs/benchmarks.md)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


@contextmanager
def _swapped(mods: list[nn.Module], make) -> Iterator[int]:
    for m in mods:
        m.forward = make(m)
    try:
        yield len(mods)
    finally:
        for m in mods:
            del m.forward


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
    with _swapped(mods, lambda m: _gelu_tanh) as k:
        yield k


def _product(x2: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x2 @ w + bias for x2 (rows, in), w (in, out): split for few rows, fused otherwise."""
    if x2.shape[0] <= SPLIT_BIAS_MAX_ROWS:
        return torch.mm(x2, w).add_(bias)
    return torch.addmm(bias, x2, w)


def _conv1d_forward(m):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return _product(x.reshape(-1, x.shape[-1]), m.weight, m.bias).view(*x.shape[:-1], m.nf)
    return forward


def _linear_forward(m):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return _product(x.reshape(-1, x.shape[-1]), m.weight.t(), m.bias).view(*x.shape[:-1], m.out_features)
    return forward


@contextmanager
def split_bias(model: nn.Module, force: bool = False) -> Iterator[int]:
    """Inside, the `Conv1D` and `nn.Linear` layers with a bias of a float32 `model` on a CUDA device, with full
    float32 products (not TF32), add the bias after the product when it has few rows (any model with `force`);
    yields how many layers were swapped."""
    p = next(model.parameters(), None)
    full = torch.get_float32_matmul_precision() == "highest"  # TF32 products: not measured, left fused
    if not force and (p is None or p.device.type != "cuda" or p.dtype != torch.float32 or not full):
        yield 0
        return
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        Conv1D = None
    mods, makers = [], {}
    for m in model.modules():
        if "forward" in m.__dict__ or getattr(m, "bias", None) is None:
            continue
        if Conv1D is not None and type(m) is Conv1D:
            mods.append(m)
            makers[id(m)] = _conv1d_forward
        elif type(m) is nn.Linear:
            mods.append(m)
            makers[id(m)] = _linear_forward
    with _swapped(mods, lambda m: makers[id(m)](m)) as k:
        yield k


@contextmanager
def editing_kernels(model: nn.Module, graphs: bool) -> Iterator[None]:
    """The swaps of this module for the forwards of a v* optimisation: the fused GELU always, the split bias when
    the steps are replayed as CUDA graphs (`graphs`; launched one by one from Python, the extra kernel and call
    cost more than the faster product saves)."""
    with ExitStack() as stack:
        stack.enter_context(fused_activations(model))
        if graphs:
            stack.enter_context(split_bias(model))
        yield
