"""Architecture adapters (docs/equations.md "Terms") on every tiny architecture: module paths, key/value orientation
(value = W k + b from `adapter.weight`, including GPT-2's transposed Conv1D), weight edits through `to_storage`,
and the registry's errors."""

import pytest
import torch
from torch import nn

from goldenlayers.cases import fact_token_index
from goldenlayers.models import adapters as adapters_mod
from goldenlayers.models.adapters import ArchAdapter, UnknownArchitectureError, get_adapter, register_adapter
from goldenlayers.models.hooks import record
from goldenlayers.models.tiny import TINY_ARCHITECTURES, tiny_model
from goldenlayers.registry import ADAPTERS
from goldenlayers.text import encode_prompts

PROMPTS = ["Maria Lopez was born in", "The capital of France is Paris, which"]


def batch(tok):
    return encode_prompts(tok, PROMPTS)


def run(model, b):
    with torch.no_grad():
        return model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits


def test_modules_exist_and_are_the_right_ones(tiny_arch, tok):
    model_type, model = tiny_arch
    ad = get_adapter(model)
    assert isinstance(ad.blocks(model), nn.ModuleList) and ad.n_layers(model) == 4
    assert (ad.d_model(model), ad.d_ff(model)) == (32, 64)
    assert ad.embed_module(model) is model.get_input_embeddings()
    assert ad.lm_head_module(model) is model.get_output_embeddings()
    for layer in range(4):
        block = ad.block(model, layer)
        mods = [m for m in block.modules()]
        dp, mlp, attn = ad.down_proj_module(model, layer), ad.mlp_module(model, layer), ad.attn_module(model, layer)
        assert dp in mods and attn in mods and mlp in mods
        assert dp in list(mlp.modules())  # the MLP contains the edited projection (OPT: it is the projection)
        assert tuple(ad.weight(model, layer).shape) == (32, 64)
        assert ad.weight_param(model, layer) is dp.weight
        assert ad.down_proj_name(model, layer) in dict(model.named_parameters())
    names = {"norm": ad.final_norm_module(model), "head": ad.lm_head_module(model),
             "attn": ad.attn_module(model, 1), "mlp": ad.mlp_module(model, 1)}
    with record(names) as rec:
        run(model, batch(tok))
    # the final norm is the last module before lm_head: its output is the head's input
    assert torch.equal(rec["norm"]["out"], rec["head"]["in"])
    assert rec["attn"]["out"].shape[-1] == 32 and rec["mlp"]["out"].shape[-1] == 32


def test_value_is_weight_times_key(tiny_arch, tok_for):
    model_type, model = tiny_arch
    ad = get_adapter(model)
    tk = tok_for(model_type)
    b = batch(tk)
    t = fact_token_index(tk, PROMPTS[0], "Maria Lopez")
    assert tk.decode(b.input_ids[0, t]).strip() == "z"  # "...Lope|z": the subject's last token
    layer = 2
    dp = ad.down_proj_module(model, layer)
    with record({"dp": dp}) as rec:
        run(model, b)
    B, T = b.input_ids.shape
    key, value = rec["dp"]["in"], rec["dp"]["out"]
    if model_type == "opt":  # OPT's MLP sees the batch flattened: (B*T, d)
        assert key.shape == (B * T, 64) and value.shape == (B * T, 32)
        key, value = key.reshape(B, T, 64), value.reshape(B, T, 32)
    assert key.shape == (B, T, 64) and value.shape == (B, T, 32)
    bias = dp.bias if getattr(dp, "bias", None) is not None else torch.zeros(32, dtype=torch.float64)
    W = ad.weight(model, layer)
    expected = W @ key[0, t] + bias  # computed independently of the module's own forward
    torch.testing.assert_close(value[0, t], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(value, key @ W.T + bias, rtol=1e-12, atol=1e-12)
    assert key[0, t].abs().sum() > 0 and W.abs().sum() > 0  # not a trivially zero check


def test_weight_edit_through_storage_orientation(tiny_arch, tok):
    model_type, model = tiny_arch
    ad = get_adapter(model)
    b = batch(tok)
    layer = 2
    watch = {f"dp{i}": ad.down_proj_module(model, i) for i in range(4)}
    watch |= {f"blk{i}": ad.block(model, i) for i in range(4)}
    with record(watch) as before:
        logits0 = run(model, b)
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(32, 64, generator=g, dtype=torch.float64)  # (d_out, d_in)
    with torch.no_grad():
        ad.weight_param(model, layer).add_(ad.to_storage(delta))
    with record(watch) as after:
        logits1 = run(model, b)
    for i in range(layer):  # earlier layers: bitwise unchanged
        for kind in ("dp", "blk"):
            assert torch.equal(before[f"{kind}{i}"]["out"], after[f"{kind}{i}"]["out"]), (kind, i)
    key = before[f"dp{layer}"]["in"]  # (B, T, d_ff); OPT: (B*T, d_ff)
    assert torch.equal(key, after[f"dp{layer}"]["in"])  # the key of the edited layer is upstream of the edit
    change = after[f"dp{layer}"]["out"] - before[f"dp{layer}"]["out"]  # (B, T, d_model); OPT: (B*T, d_model)
    torch.testing.assert_close(change, key @ delta.T, rtol=1e-10, atol=1e-10)  # delta @ k at every token
    assert not torch.allclose(logits0, logits1)


def test_mlp_output_normalised_says_whether_the_down_proj_scale_counts(tiny_arch, tok):
    """`mlp_output_normalised` is a fact of the architecture: scaling a layer's down-proj weight (bias too) leaves
    the logits unchanged exactly when the adapter says the MLP output is normalised (Gemma 2/3). (First scaled
    up 1000x: a random tiny model's MLP outputs are so small that the RMSNorm's epsilon still counts.)"""
    model_type, model = tiny_arch
    ad = get_adapter(model)
    b = batch(tok)
    dp = ad.down_proj_module(model, 2)

    def scaled(factor):
        with torch.no_grad():
            dp.weight.mul_(factor)
            if getattr(dp, "bias", None) is not None:
                dp.bias.mul_(factor)
        return run(model, b)

    logits0, logits1 = scaled(1000.0), scaled(3.0)
    assert ad.mlp_output_normalised == (model_type in ("gemma2", "gemma3_text", "gemma3"))
    assert torch.allclose(logits0, logits1, rtol=1e-6, atol=1e-6) == ad.mlp_output_normalised


def test_unknown_architecture_lists_supported_and_shows_how_to_register():
    with pytest.raises(UnknownArchitectureError) as e:
        get_adapter("lamma")
    msg = str(e.value)
    assert "'lamma'" in msg and "did you mean 'llama'" in msg
    for name in TINY_ARCHITECTURES:
        assert name in msg
    assert "register_adapter(ArchAdapter(" in msg

    class Odd(nn.Module):
        config = type("Cfg", (), {"model_type": "odd_net"})()

    with pytest.raises(UnknownArchitectureError, match="unknown architecture 'odd_net'"):
        get_adapter(Odd())


def test_registering_a_duplicate_name_is_an_error():
    with ADAPTERS.restoring(), pytest.raises(ValueError, match="'llama' is already registered"):
        register_adapter(ArchAdapter(model_type="llama", decoder_prefixes=("model",), layers="layers",
                                     down_proj="mlp.down_proj", attn="self_attn", final_norm="norm",
                                     embed="embed_tokens"))
    assert get_adapter("llama").notes == ""  # the original is untouched


class Wrapped(nn.Module):
    """A made-up architecture: a LLaMA decoder under other attribute names."""

    def __init__(self, inner):
        super().__init__()
        self.backbone, self.head = inner.model, inner.lm_head
        self.config = type("Cfg", (), {"model_type": "wrapped_llama"})()


def test_register_adapter_for_a_new_model_type():
    with ADAPTERS.restoring():
        _register_and_use_a_new_model_type()
    assert "wrapped_llama" not in adapters_mod.supported_architectures()  # the block's registration is undone


def _register_and_use_a_new_model_type():
    inner = tiny_model("llama")
    ad = register_adapter(ArchAdapter(model_type="wrapped_llama", decoder_prefixes=("backbone",), layers="layers",
                                      down_proj="mlp.down_proj", attn="self_attn", final_norm="norm",
                                      embed="embed_tokens", lm_head="head", aliases=("wl",)))
    model = Wrapped(inner)
    assert get_adapter(model) is ad and get_adapter("wl") is ad
    assert ad.n_layers(model) == 4
    assert ad.down_proj_module(model, 3) is inner.model.layers[3].mlp.down_proj
    assert ad.lm_head_module(model) is inner.lm_head and ad.embed_module(model) is inner.model.embed_tokens
    assert "wrapped_llama" in adapters_mod.supported_architectures()


@pytest.mark.parametrize("bad", [4, 17, -1])
def test_out_of_range_layer(bad):
    model = tiny_model("gpt2")
    ad = get_adapter(model)
    with pytest.raises(IndexError, match=rf"layer {bad} is out of range: this gpt2 model has layers 0\.\.3"):
        ad.down_proj_module(model, bad)
    with pytest.raises(IndexError):
        ad.weight(model, bad)
