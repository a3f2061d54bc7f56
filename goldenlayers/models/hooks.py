"""Forward hooks used by editing, causal tracing and LGA: read a module's input/output, or rewrite its output.

Module outputs may be tensors or tuples (attention modules return `(hidden, weights, ...)`); the helpers
here always act on the first tensor and pass the rest through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def first_tensor(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def replace_first(x, new: torch.Tensor):
    if isinstance(x, tuple):
        return (new, *x[1:])
    if isinstance(x, list):
        return [new, *x[1:]]
    return new


def _first_tensor_kwarg(kwargs: dict) -> torch.Tensor:
    if isinstance(kwargs.get("hidden_states"), torch.Tensor):
        return kwargs["hidden_states"]
    for v in kwargs.values():
        if isinstance(v, torch.Tensor):
            return v
    raise ValueError(f"module called without a tensor input (keywords: {sorted(kwargs)})")


@contextmanager
def record(modules: dict[str, nn.Module], inputs: bool = True, outputs: bool = True, detach: bool = True
           ) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Record each module's first input (`"in"`) and first output tensor (`"out"`).

    The first input is the first positional argument, or, for modules called with keywords only (attention
    modules in recent transformers), the `hidden_states` keyword (else the first tensor keyword).

    Yields `{name: {"in": (B, T, d_in), "out": (B, T, d_out)}}`, filled during the forward passes inside the
    block (the last forward wins). `detach=False` keeps the graph (LGA needs the outputs' gradients).
    """
    store: dict[str, dict[str, torch.Tensor]] = {name: {} for name in modules}
    handles = []

    def make(name: str):
        def hook(_mod, args, kwargs, out):
            if inputs:
                x = args[0] if args else _first_tensor_kwarg(kwargs)
                store[name]["in"] = x.detach() if detach else x
            if outputs:
                y = first_tensor(out)
                store[name]["out"] = y.detach() if detach else y
        return hook

    try:
        for name, mod in modules.items():
            handles.append(mod.register_forward_hook(make(name), with_kwargs=True))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def edit_output(module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the module's first output tensor `y` with `fn(y)` for forwards inside the block."""

    def hook(_mod, _args, out):
        return replace_first(out, fn(first_tensor(out)))

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def gather_positions(module: nn.Module, positions: torch.Tensor) -> Iterator[None]:
    """Inside, `module` (e.g. the output projection) sees only the positions `positions` (B, K) of its first
    input (B, T, d), per row: it computes (B, K, ...) instead of (B, T, ...), e.g. the logits the loss reads."""

    def hook(_mod, args):
        x = args[0]  # an output projection is called with the hidden states as its only positional argument
        return (x.gather(1, positions.to(x.device)[..., None].expand(-1, -1, x.shape[-1])), *args[1:])

    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
