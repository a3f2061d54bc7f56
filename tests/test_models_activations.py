"""The one-kernel tanh-GELU swapped in during editing forwards (models.activations): same function, restored."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from editing_helpers import setup_tiny

from goldenlayers.models.activations import fused_activations


def _gelu_forwards(model):
    return [type(m).__name__ for m in model.modules() if "forward" in m.__dict__]


def test_fused_gelu_is_the_same_function_and_is_removed_on_exit():
    model, tok, _ = setup_tiny("gpt2")  # gelu_new in every MLP
    ids = tok(["Anna Smith plays the violin", "The lawyer is Tom Baker"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**ids).logits
        with fused_activations(model) as swapped:
            assert swapped == model.config.n_layer
            inside = model(**ids).logits
        after = model(**ids).logits
    assert not _gelu_forwards(model)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    torch.testing.assert_close(inside, before, rtol=1e-5, atol=1e-5)

    x = torch.linspace(-6, 6, 1001, dtype=torch.float64, requires_grad=True)
    act = model.transformer.h[0].mlp.act
    ref = act(x)
    gref, = torch.autograd.grad(ref.sum(), x)
    with fused_activations(model):
        y = act(x)
        g, = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, gref, rtol=1e-10, atol=1e-12)


def test_half_precision_and_other_activations_are_left_alone():
    model, _, _ = setup_tiny("gpt2")
    with fused_activations(model.to(torch.bfloat16)) as swapped:
        assert swapped == 0 and not _gelu_forwards(model)
    llama, _, _ = setup_tiny("llama")  # SiLU: already one kernel
    with fused_activations(llama) as swapped:
        assert swapped == 0
