"""Layer Gradient Analysis (LGA): score layers by the inner product of old- and new-answer weight gradients.

Paper section 5.1; docs/equations.md "LGA" and "Cheap LGA". For case i and layer l with down-proj
weight W_l (d_model x d_ff):

    phi_{i,l} = < grad_{W_l} L(x_i, y_old), grad_{W_l} L(x_i, y_new) >,    S(l) = mean_i phi_{i,l}

L is the teacher-forced token cross-entropy of the answer after the prompt, summed over answer tokens
(batches from goldenlayers.text.encode_answers). The gradients are never formed: for y_t = W x_t the weight
gradient is sum_t g_t x_t^T (g_t = dL/dy_t), so <G, G'> = sum_{t,s} (g_t . g'_s)(x_t . x'_s), two T x T Gram
matrices per case and layer. One forward + one backward of a batch holding the old- and new-answer
sequences of `batch_size` cases yields phi for every case and every layer: forward hooks on the down-projs
compute the key Grams X_old X_new^T (B, T, T) on the fly and hand back outputs that carry the graph, and one
`torch.autograd.grad` call returns dL/dy for all layers. Per-case losses are summed, rows do not interact,
so batching is exact; padding rows/positions are masked out. No parameter gets requires_grad; bias
gradients are not part of phi.

Variants (LGASettings): `variant="cosine"` divides by ||G|| ||G'|| (norms from the same Gram trick; 0 when a
gradient vanishes); `normalize` rescales each case's layer vector before averaging ("max": unit max |.|,
"zscore": zero mean, unit std over layers); `sign=-1` scores -phi; `absolute=True` scores |phi| (the size of a
layer's "impact", whatever its sign). The golden-layer estimate is the Tukey-fenced argmax of S (LayerScores.pick).

Readings of the paper as selector names (`LGA_READINGS`, registered as "lga-<suffix>" entries of the selector
registry; docs/selection.md "LGA readings"): `lga` is the reading
of docs/equations.md "Layer selection" (dot product, argmax); the text does not fix the sign ("higher gradient similarity values denote
more ... impact" is said of training-sample attribution, where old and new answers pull in opposite directions),
so `lga-neg` takes the argmax of -S (the layer where the two gradients disagree most); "how strongly each layer
mediates the interaction" admits the magnitude, `lga-abs`; `lga-cosine` / `lga-cosine-neg` remove the gradient
norms (which grow towards the output); `lga-max` / `lga-zscore` weigh every case equally; `lga-nofence` /
`lga-neg-nofence` take the plain argmax (Appendix A's outlier exclusion is a choice, and an extreme layer can be
the best one). The old answer is `ground_truth[0]` or the model's greedy
prediction (goldenlayers.selection.answers). `lga_select` and `lga_pick` are the selector's scoring and choosing
functions in the registry's calling convention (goldenlayers.selection.registry).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from goldenlayers.cases import CaseError, EditCase
from goldenlayers.models.adapters import ArchAdapter, get_adapter
from goldenlayers.models.loader import model_device
from goldenlayers.selection.answers import old_answers
from goldenlayers.selection.pick import pick_layer
from goldenlayers.selection.table import LayerScores, dataset_label, model_label
from goldenlayers.text import encode_answers, model_max_length


class LGASettings(BaseModel):
    """LGA options. batch_size counts cases (each contributes two sequences: old and new answer; None: the
    caller's batch, `batch.select` in a run); k: Tukey fence factor of the pick (None: the plain argmax);
    top: length of the pick's ranking."""

    model_config = ConfigDict(extra="forbid")

    variant: Literal["dot", "cosine"] = "dot"
    normalize: Literal["none", "max", "zscore"] = "none"
    sign: Literal[1, -1] = 1
    absolute: bool = False
    batch_size: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(8, ge=1, description="greedy old-answer length limit when ground_truth is absent")
    k: float | None = Field(1.5, ge=0)
    top: int = Field(5, ge=1)

    @property
    def name(self) -> str:
        parts = ["lga"] + ([self.variant] if self.variant != "dot" else []) + (["abs"] if self.absolute else [])
        parts += [self.normalize] if self.normalize != "none" else []
        return "-".join(parts + (["neg"] if self.sign < 0 else []) + (["nofence"] if self.k is None else []))


# "lga-<suffix>" -> LGASettings it fixes: the readings of the paper's LGA, registered as selectors of their own
LGA_READINGS: dict[str, dict] = {
    "neg": dict(sign=-1),
    "abs": dict(absolute=True),
    "cosine": dict(variant="cosine"),
    "cosine-neg": dict(variant="cosine", sign=-1),
    "max": dict(normalize="max"),
    "zscore": dict(normalize="zscore"),
    # Appendix A's Tukey fences left out (k None: the plain argmax): the fences can exclude the best layer
    "nofence": dict(k=None),
    "neg-nofence": dict(sign=-1, k=None),
}


def _acc_dtype(model) -> torch.dtype:
    return torch.float64 if next(model.parameters()).dtype == torch.float64 else torch.float32


def batch_phi(model, tok, adapter: ArchAdapter, layers: list[int], prompts: list[str], olds: list[str],
              news: list[str], cosine: bool = False) -> torch.Tensor:
    """phi (or the cosine) for B cases at the given layers: (B, L) float64, from one forward + one backward."""
    n = len(prompts)
    acc = _acc_dtype(model)
    enc = encode_answers(tok, prompts + prompts, olds + news, model_max_length(model), model_device(model))
    mask = enc.attention_mask.to(acc)[..., None]  # (2B, T, 1)
    shape = (2 * n, enc.input_ids.shape[1], -1)  # OPT feeds fc2 flattened (2B*T, d): view as (2B, T, d)
    grams: dict[int, list[torch.Tensor]] = {}
    outs: dict[int, torch.Tensor] = {}

    def gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (B, T, d) x (B, T, d) -> (B, T, T)
        return torch.bmm(a, b.transpose(1, 2))

    def make_hook(layer: int):
        def hook(_mod, args, out):
            x = args[0].detach().reshape(shape).to(acc) * mask  # keys (2B, T, d_ff)
            xo, xn = x[:n], x[n:]
            grams[layer] = [gram(xo, xn)] + ([gram(xo, xo), gram(xn, xn)] if cosine else [])
            if not out.requires_grad:  # first hooked layer: start the graph here, not at the parameters
                out = out.detach().requires_grad_()
            outs[layer] = out
            return out
        return hook

    handles = [adapter.down_proj_module(model, layer).register_forward_hook(make_hook(layer)) for layer in layers]
    try:
        with torch.enable_grad():
            keep = enc.input_ids.shape[1] - int(enc.prompt_last.min())
            logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, logits_to_keep=keep).logits
            predict = enc.predict_mask[:, -keep:][:, :-1]  # (2B, keep - 1)
            targets = enc.input_ids[:, -keep:][:, 1:][predict]
            loss = F.cross_entropy(logits[:, :-1][predict].to(acc), targets, reduction="sum")
            grads = torch.autograd.grad(loss, [outs[layer] for layer in layers])
    finally:
        for h in handles:
            h.remove()
    phi = []
    for layer, g in zip(layers, grads, strict=True):
        g = g.reshape(shape).to(acc) * mask  # value gradients (2B, T, d_model)
        go, gn = g[:n], g[n:]
        dot = (gram(go, gn) * grams[layer][0]).sum((1, 2))
        if cosine:
            norm_o = (gram(go, go) * grams[layer][1]).sum((1, 2)).clamp_min(0).sqrt()
            norm_n = (gram(gn, gn) * grams[layer][2]).sum((1, 2)).clamp_min(0).sqrt()
            dot = dot / (norm_o * norm_n).clamp_min(torch.finfo(acc).tiny)  # |dot| <= norms: 0 stays 0
        phi.append(dot)
    return torch.stack(phi, dim=1).double().cpu()


def normalize_rows(m: np.ndarray, how: str) -> np.ndarray:
    """Per-case normalisation of a (N, L) matrix: "none", "max" (row / max |row|) or "zscore" (over layers).

    A row that is constant (zscore) or all zero (max) becomes zeros."""
    if how == "none":
        return m
    if how == "max":
        scale = np.abs(m).max(axis=1, keepdims=True)
        return np.divide(m, scale, out=np.zeros_like(m), where=scale > 0)
    if how == "zscore":
        std = m.std(axis=1, keepdims=True)
        return np.divide(m - m.mean(axis=1, keepdims=True), std, out=np.zeros_like(m), where=std > 0)
    raise ValueError(f"unknown normalisation {how!r}: choose none, max or zscore")


def _usable(tok, model, cases: list[EditCase], olds: dict[str, str], skipped: dict[str, str]) -> list[EditCase]:
    """Cases whose prompt+answers tokenise within the context; the others go to `skipped` with the reason."""
    out, limit = [], model_max_length(model)
    for c in cases:
        if c.case_id in skipped:
            continue
        for field, answer in (("ground_truth", olds[c.case_id]), ("target_new", c.target_new)):
            try:
                encode_answers(tok, [c.prompt], [answer], limit)
            except ValueError as e:
                skipped[c.case_id] = str(CaseError(c.case_id, field, str(e)))
                break
        else:
            out.append(c)
    return out


def lga_scores(model, tok, cases: list[EditCase], adapter: ArchAdapter | None = None,
               layers: list[int] | None = None, batch_size: int = 16, variant: str = "dot",
               progress: bool = True, normalize: str = "none", sign: int = 1, max_new_tokens: int = 8,
               model_name: str | None = None, absolute: bool = False) -> LayerScores:
    """LGA layer scores S(l) with the per-case matrix phi (cases x layers); unusable cases are skipped."""
    settings = LGASettings(variant=variant, normalize=normalize, sign=sign, batch_size=batch_size,
                           max_new_tokens=max_new_tokens, absolute=absolute)
    start = time.perf_counter()
    adapter = adapter or get_adapter(model)
    layers = sorted(adapter.check_layer(model, layer) for layer in (layers or range(adapter.n_layers(model))))
    olds, skipped, predicted = old_answers(model, tok, cases, settings.max_new_tokens, settings.batch_size)
    usable = _usable(tok, model, cases, olds, skipped)
    rows = []
    steps = range(0, len(usable), settings.batch_size)
    for i in tqdm(steps, desc="LGA", disable=not progress):
        chunk = usable[i:i + settings.batch_size]
        rows.append(batch_phi(model, tok, adapter, layers, [c.prompt for c in chunk],
                              [olds[c.case_id] for c in chunk], [c.target_new for c in chunk],
                              cosine=settings.variant == "cosine").numpy())
    phi = np.concatenate(rows or [np.zeros((0, len(layers)))])
    per_case = normalize_rows(settings.sign * (np.abs(phi) if settings.absolute else phi), settings.normalize)
    return LayerScores.from_per_case(
        settings.name, dataset_label(c.dataset for c in cases), model_name or model_label(model), layers, per_case,
        [c.case_id for c in usable], seconds=time.perf_counter() - start, skipped=skipped,
        meta=dict(settings.model_dump(), predicted_old_answers=len(predicted & {c.case_id for c in usable})),
    )


def lga_select(inp, s: LGASettings) -> LayerScores:
    """The LGA selector's scoring function (goldenlayers.selection.registry.SelectionInput): `lga_scores` with
    the settings `s`, in batches of s.batch_size cases (None: the input's select_batch)."""
    return lga_scores(inp.model, inp.tok, list(inp.cases), layers=inp.layers, variant=s.variant,
                      normalize=s.normalize, sign=s.sign, absolute=s.absolute, max_new_tokens=s.max_new_tokens,
                      batch_size=s.batch_size or inp.select_batch, progress=inp.progress, model_name=inp.model_name)


def lga_pick(table: LayerScores, s: LGASettings):
    """The LGA selector's choice: the Tukey-fenced argmax with s.k and s.top (a LayerPick), or the plain argmax
    when s.k is None."""
    return pick_layer(table, k=s.k, top=s.top) if s.k is not None else table.best()
