"""Architecture adapters: where each Hugging Face causal LM keeps the parts that editing touches.

docs/equations.md "Terms": the edited module of layer l is the MLP output projection ("down-proj"); its
*input* at a token is the key k (dimension d_ff) and its *output* the value (dimension d_model).
Model facts live here, never in method settings (docs/design.md "House style" 2). An adapter is keyed by
`config.model_type`; `register_adapter` adds one for an architecture we do not ship.

All weight access goes through `weight(model, l)`, which returns W in (d_out, d_in) orientation
(y = W k) whatever the storage: GPT-2's `Conv1D` stores (d_in, d_out), and the adapter transposes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from goldenlayers.registry import ADAPTERS, UnknownNameError

MLP_OUT = "mlp_out"  # the MLP's output projection (down-proj): key = its input (d_ff), value = its output
ATTN_OUT = "attn_out"  # the attention's output projection (o_proj): key = the heads' concatenated output


class UnknownArchitectureError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclass(frozen=True)
class ArchAdapter:
    """Paths (relative to the decoder prefix or the model root) of the modules editing needs.

    decoder_prefixes: candidate paths of the module that holds the decoder layers, tried in order
        (the first that resolves wins; lets one adapter serve a text-only model and a multimodal wrapper).
    layers: attribute of the decoder that is the ModuleList of blocks.
    down_proj: path inside a block of the MLP output projection (the edited module).
    mlp: path inside a block whose output is the MLP contribution (for CMA "mlp" kind); None -> down_proj.
    attn: path inside a block of the attention module (for CMA "attn" kind; output may be a tuple).
    final_norm: path inside the decoder of the final norm.
    embed: path inside the decoder of the token embedding.
    lm_head: path from the model root of the output projection.
    down_proj_transposed: True when the weight is stored (d_in, d_out) (GPT-2 Conv1D).
    mlp_output_normalised: True when the MLP output is normalised before it joins the residual stream (Gemma 2/3's
        post_feedforward_layernorm, an RMSNorm): only the direction of a token's down-proj output counts, not its
        length (ROME/R-ROME then use the v* of least change, editing.rome.site_value).
    attn_out: path inside a block of the attention output projection (site "attn_out"); None: not declared.
    attn_out_transposed: as down_proj_transposed, for attn_out.

    Sites: the weights a method may edit, by name (`sites`): "mlp_out" (down_proj) always, "attn_out" where
    declared. `site_weight(model, layer, site)` is W in (d_out, d_in) orientation, `site_to_storage` turns a
    delta back; `weight`/`weight_param`/`to_storage` are the "mlp_out" site's.
    """

    model_type: str
    decoder_prefixes: tuple[str, ...]
    layers: str
    down_proj: str
    attn: str
    final_norm: str
    embed: str
    lm_head: str = "lm_head"
    mlp: str | None = "mlp"
    down_proj_transposed: bool = False
    mlp_output_normalised: bool = False
    attn_out: str | None = None
    attn_out_transposed: bool = False
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    # -- resolution -------------------------------------------------------------------------------
    def decoder(self, model: nn.Module) -> nn.Module:
        for prefix in self.decoder_prefixes:
            try:
                dec = model.get_submodule(prefix) if prefix else model
                dec.get_submodule(self.layers)
                return dec
            except AttributeError:
                continue
        raise UnknownArchitectureError(
            f"{self.model_type} adapter: none of the decoder paths {self.decoder_prefixes} with "
            f"'.{self.layers}' exists in {type(model).__name__}"
        )

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        return self.decoder(model).get_submodule(self.layers)

    def n_layers(self, model: nn.Module) -> int:
        return len(self.blocks(model))

    def check_layer(self, model: nn.Module, layer: int) -> int:
        n = self.n_layers(model)
        if not isinstance(layer, int) or not 0 <= layer < n:
            raise IndexError(f"layer {layer!r} is out of range: this {self.model_type} model has layers 0..{n - 1}")
        return layer

    def block(self, model: nn.Module, layer: int) -> nn.Module:
        return self.blocks(model)[self.check_layer(model, layer)]

    def down_proj_module(self, model: nn.Module, layer: int) -> nn.Module:
        return self.block(model, layer).get_submodule(self.down_proj)

    def mlp_module(self, model: nn.Module, layer: int) -> nn.Module:
        return self.block(model, layer).get_submodule(self.mlp or self.down_proj)

    def attn_module(self, model: nn.Module, layer: int) -> nn.Module:
        return self.block(model, layer).get_submodule(self.attn)

    def final_norm_module(self, model: nn.Module) -> nn.Module:
        return self.decoder(model).get_submodule(self.final_norm)

    def embed_module(self, model: nn.Module) -> nn.Module:
        return self.decoder(model).get_submodule(self.embed)

    def lm_head_module(self, model: nn.Module) -> nn.Module:
        """The output projection at `lm_head`; else the model's own output embeddings (attribute names move
        between transformers versions, e.g. GPT-NeoX's `embed_out` became `lm_head` in transformers 5)."""
        try:
            return model.get_submodule(self.lm_head)
        except AttributeError:
            head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
            if head is None:
                raise
            return head

    def down_proj_name(self, model: nn.Module, layer: int) -> str:
        """Full parameter path of the edited weight (for reports and state dicts)."""
        blocks = self.blocks(model)
        for name, mod in model.named_modules():
            if mod is blocks:
                return f"{name}.{self.check_layer(model, layer)}.{self.down_proj}.weight"
        raise RuntimeError("decoder blocks not found among named modules")  # pragma: no cover

    # -- weights in (d_out, d_in) orientation -----------------------------------------------------
    def weight_param(self, model: nn.Module, layer: int) -> nn.Parameter:
        return self.down_proj_module(model, layer).weight

    def weight(self, model: nn.Module, layer: int) -> torch.Tensor:
        """W of the down-proj as (d_out=d_model, d_in=d_ff): value = W @ key (+ bias). A view, not a copy."""
        w = self.weight_param(model, layer)
        return w.T if self.down_proj_transposed else w

    def to_storage(self, delta: torch.Tensor) -> torch.Tensor:
        """Turn a (d_out, d_in) delta into the parameter's storage orientation."""
        return delta.T if self.down_proj_transposed else delta

    # -- sites: the weights a method may edit -----------------------------------------------------
    @property
    def sites(self) -> tuple[str, ...]:
        return (MLP_OUT,) + ((ATTN_OUT,) if self.attn_out is not None else ())

    def _site(self, site: str) -> tuple[str, bool]:
        if site == MLP_OUT:
            return self.down_proj, self.down_proj_transposed
        if site == ATTN_OUT and self.attn_out is not None:
            return self.attn_out, self.attn_out_transposed
        raise KeyError(f"{self.model_type} has no edit site {site!r}; it declares {', '.join(self.sites)}")

    def site_module(self, model: nn.Module, layer: int, site: str = MLP_OUT) -> nn.Module:
        return self.block(model, layer).get_submodule(self._site(site)[0])

    def site_param(self, model: nn.Module, layer: int, site: str = MLP_OUT) -> nn.Parameter:
        return self.site_module(model, layer, site).weight

    def site_weight(self, model: nn.Module, layer: int, site: str = MLP_OUT) -> torch.Tensor:
        """W of `site` as (d_out, d_in): output = W @ input (+ bias). A view, not a copy."""
        w = self.site_param(model, layer, site)
        return w.T if self._site(site)[1] else w

    def site_to_storage(self, delta: torch.Tensor, site: str = MLP_OUT) -> torch.Tensor:
        """Turn a (d_out, d_in) delta of `site` into its parameter's storage orientation."""
        return delta.T if self._site(site)[1] else delta

    def d_ff(self, model: nn.Module) -> int:
        return self.weight(model, 0).shape[1]

    def d_model(self, model: nn.Module) -> int:
        return self.weight(model, 0).shape[0]


def register_adapter(adapter: ArchAdapter, *, replace: bool = False) -> ArchAdapter:
    """Add an adapter for `adapter.model_type` (and its aliases) to goldenlayers.registry.ADAPTERS. A name
    another adapter holds is an error (NameCollisionError, a ValueError) unless `replace`."""
    ADAPTERS.register(adapter.model_type, adapter, aliases=adapter.aliases, replace=replace)
    return adapter


def supported_architectures() -> list[str]:
    """Every model_type with an adapter, aliases included, sorted."""
    return sorted({*ADAPTERS.names(), *(a for n in ADAPTERS.names() for a in ADAPTERS.aliases(n))})


_HOW_TO_REGISTER = """To add one, describe where its modules live and register it, e.g.:

    from goldenlayers.models import ArchAdapter, register_adapter
    register_adapter(ArchAdapter(
        model_type="mymodel", decoder_prefixes=("model",), layers="layers",
        down_proj="mlp.down_proj", attn="self_attn", final_norm="norm", embed="embed_tokens"))
"""


def get_adapter(model_or_type: nn.Module | str) -> ArchAdapter:
    """The adapter for a model (by its `config.model_type`) or for a model_type string."""
    if isinstance(model_or_type, str):
        model_type = model_or_type
    else:
        cfg = getattr(model_or_type, "config", None)
        model_type = getattr(cfg, "model_type", None) or type(model_or_type).__name__
    try:
        return ADAPTERS.get(model_type)
    except UnknownNameError as e:
        raise UnknownArchitectureError(f"{e}.\n{_HOW_TO_REGISTER}") from None


def _llama_like(model_type: str, notes: str = "", aliases: tuple[str, ...] = (), prefixes=("model",),
                normalised: bool = False) -> ArchAdapter:
    return ArchAdapter(
        model_type=model_type,
        decoder_prefixes=prefixes,
        layers="layers",
        down_proj="mlp.down_proj",
        attn="self_attn",
        final_norm="norm",
        embed="embed_tokens",
        attn_out="self_attn.o_proj",
        notes=notes,
        aliases=aliases,
        mlp_output_normalised=normalised,
    )


for _a in (
    ArchAdapter(
        model_type="gpt2",
        decoder_prefixes=("transformer",),
        layers="h",
        down_proj="mlp.c_proj",
        attn="attn",
        final_norm="ln_f",
        embed="wte",
        down_proj_transposed=True,
        attn_out="attn.c_proj",
        attn_out_transposed=True,
        notes="Conv1D stores (d_in, d_out): y = x W + b",
    ),
    ArchAdapter(
        model_type="gptj",
        decoder_prefixes=("transformer",),
        layers="h",
        down_proj="mlp.fc_out",
        attn="attn",
        final_norm="ln_f",
        embed="wte",
        attn_out="attn.out_proj",
    ),
    ArchAdapter(
        model_type="gpt_neox",
        decoder_prefixes=("gpt_neox",),
        layers="layers",
        down_proj="mlp.dense_4h_to_h",
        attn="attention",
        final_norm="final_layer_norm",
        embed="embed_in",
        attn_out="attention.dense",
    ),
    ArchAdapter(
        model_type="opt",
        decoder_prefixes=("model.decoder",),
        layers="layers",
        down_proj="fc2",
        mlp=None,
        attn="self_attn",
        final_norm="final_layer_norm",
        embed="embed_tokens",
        attn_out="self_attn.out_proj",
        notes="no MLP submodule: the MLP output is fc2's output",
    ),
    _llama_like("llama"),
    _llama_like("mistral"),
    _llama_like("qwen2"),
    _llama_like("qwen3"),
    _llama_like("phi3"),
    _llama_like("gemma", notes="embeddings scaled by sqrt(d_model); lm_head tied to embeddings"),
    _llama_like("gemma2", notes="MLP output is normalised (post_feedforward_layernorm) before the residual",
                normalised=True),
    _llama_like(
        "gemma3_text",
        notes="MLP output normalised before the residual; embedding scale inside the embedding module",
        normalised=True,
    ),
    _llama_like(
        "gemma3",
        notes="multimodal wrapper: the text decoder is nested (model.language_model)",
        prefixes=("model.language_model", "language_model.model", "language_model", "model"),
        normalised=True,
    ),
):
    register_adapter(_a)
