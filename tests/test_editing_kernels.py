"""Faster kernels for the editing forwards (editing.accel.kernels): the same function, swapped in and removed again."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from editing_helpers import setup_tiny

import goldenlayers.editing.accel.kernels as kernels
from goldenlayers.editing.accel.kernels import editing_kernels, fused_activations, split_bias


def _swapped_forwards(model):
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
    assert not _swapped_forwards(model)
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
        assert swapped == 0 and not _swapped_forwards(model)
    llama, _, _ = setup_tiny("llama")  # SiLU: already one kernel
    with fused_activations(llama) as swapped:
        assert swapped == 0


def test_split_bias_only_on_a_cuda_device_in_float32():
    model, _, _ = setup_tiny("gpt2")
    with split_bias(model) as swapped, editing_kernels(model, graphs=True):
        assert swapped == 0 and _swapped_forwards(model) == ["NewGELUActivation"] * model.config.n_layer
    assert not _swapped_forwards(model)


@pytest.mark.parametrize("arch", ["gpt2", "opt"])  # Conv1D layers; nn.Linear layers with a bias
def test_split_bias_products_equal_the_fused_ones(arch, monkeypatch):
    """The swapped forwards (forced on a CPU, float64) give the model's outputs and input gradients, split (few
    rows) and fused (many rows)."""
    model, tok, _ = setup_tiny(arch)
    model = model.double()
    ids = tok(["Anna Smith plays the violin", "The lawyer is Tom Baker"], return_tensors="pt", padding=True)
    p = next(model.parameters())
    emb = model.get_input_embeddings()(ids["input_ids"]).detach().requires_grad_(True)

    def run():
        out = model(inputs_embeds=emb, attention_mask=ids["attention_mask"]).logits
        g, = torch.autograd.grad(out.square().sum(), emb)
        return out.detach(), g

    want = run()
    n_bias = sum(1 for m in model.modules() if getattr(m, "bias", None) is not None
                 and type(m).__name__ in ("Conv1D", "Linear"))
    for max_rows in (10_000, 0):  # every product split; none split
        monkeypatch.setattr(kernels, "SPLIT_BIAS_MAX_ROWS", max_rows)
        with split_bias(model, force=True) as swapped:
            assert swapped == n_bias > 0
            got = run()
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert p.dtype == torch.float64 and not _swapped_forwards(model)


@pytest.mark.gpu
def test_split_bias_on_a_cuda_device_gives_the_same_logits():
    model, tok, _ = setup_tiny("gpt2")
    model.cuda()
    ids = tok(["Anna Smith plays the violin"], return_tensors="pt").to("cuda")
    with torch.no_grad():
        want = model(**ids).logits
        with split_bias(model) as swapped:
            assert swapped == 4 * model.config.n_layer  # c_attn, attn c_proj, c_fc, mlp c_proj
            got = model(**ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
