"""Causal tracing machinery (ROME's corrupted-with-restoration runs), shared by CMA scores and heatmaps.

docs/equations.md "CMA"; paper section 5.2 compares against it. A prompt is run clean, then with
Gaussian noise added to the token embeddings of every subject token (std = noise_scale x the std of
subject-token embeddings, one scalar; `noise_samples` seeded draws, the same draws for every restoration,
as ROME re-seeds its generator on every call). A *restoration* copies the clean state of some
(kind, layer, token) sites into the corrupted runs. Kinds: "residual" (block output), "mlp" (MLP output),
"attn" (attention output), located through the architecture adapter. The measured quantity is the
probability of the answer token at the last prompt position, averaged over the noise samples.

Batching: one forward holds the clean run in row 0 and, for each restoration group, `noise_samples` noisy
rows; hooks copy row 0's state into the restored rows at the moment each layer runs, so no separate clean
pass is needed. Groups are packed into forwards of at most `batch_size` rows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

import torch

from goldenlayers.cases import EditCase, subject_token_indices
from goldenlayers.models.adapters import ArchAdapter
from goldenlayers.models.hooks import first_tensor, replace_first
from goldenlayers.models.loader import model_device

Kind = Literal["residual", "mlp", "attn"]
KINDS: tuple[str, ...] = ("residual", "mlp", "attn")
Site = tuple[str, int, int]  # (kind, layer, token)


def window_layers(layer: int, window: int, n_layers: int) -> list[int]:
    """Layers restored for a window centred at `layer`: layer - w//2 .. layer + ceil(w/2) - 1, clipped to
    [0, n_layers) (ROME: 10 -> l-5..l+4; 1 -> l)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return list(range(max(0, layer - window // 2), min(n_layers, layer - window // 2 + window)))


def site_module(adapter: ArchAdapter, model, kind: str, layer: int):
    if kind == "residual":
        return adapter.block(model, layer)
    if kind == "mlp":
        return adapter.mlp_module(model, layer)
    if kind == "attn":
        return adapter.attn_module(model, layer)
    raise ValueError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")


@torch.no_grad()
def embedding_noise_std(model, tok, cases: list[EditCase], adapter: ArchAdapter,
                        basis: Literal["subjects", "embeddings"] = "subjects") -> float:
    """Std (one scalar, unbiased, over all elements) of the embedding module's outputs: over the subject
    tokens of `cases` in their prompts ("subjects", as ROME's collect_embedding_std), or over the whole
    vocabulary ("embeddings"). Multiply by noise_scale (3) for the noise std."""
    embed, device = adapter.embed_module(model), model_device(model)
    if basis == "subjects":
        vecs = [embed(torch.tensor(tok(c.prompt)["input_ids"], device=device))[
            subject_token_indices(tok, c.prompt, c.subject, c.case_id)] for c in cases]
        return torch.cat(vecs).double().std().item()
    if basis != "embeddings":
        raise ValueError(f"unknown noise basis {basis!r}: choose subjects or embeddings")
    total = sq = count = 0.0
    vocab = embed.weight.shape[0]
    for start in range(0, vocab, 4096):
        e = embed(torch.arange(start, min(vocab, start + 4096), device=device)).double()
        total, sq, count = total + e.sum().item(), sq + (e * e).sum().item(), count + e.numel()
    return ((sq - total * total / count) / (count - 1)) ** 0.5


def draw_noise(samples: int, n_tokens: int, d_model: int, std: float, seed: int) -> torch.Tensor:
    """(samples, n_tokens, d_model) float32 Gaussian noise of the given std, from a fresh seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((samples, n_tokens, d_model), generator=gen) * std


@torch.no_grad()
def restored_probs(model, adapter: ArchAdapter, ids: torch.Tensor, subject: list[int], answer: int,
                   noise: torch.Tensor, groups: list[list[Site]], batch_size: int = 256
                   ) -> tuple[float, float, torch.Tensor]:
    """Answer probability clean, corrupted, and corrupted with each group's sites restored.

    ids: (T,) prompt token ids; subject: token indices that get noise; noise: (S, len(subject), d_model).
    Returns (p_clean, p_corrupted, p_restored (G,) float64), p averaged over the S noise rows.
    """
    n_samples, device = noise.shape[0], model_device(model)
    ids = ids.to(device)
    per_forward = max(1, (batch_size - 1) // n_samples)
    all_groups = [[]] + list(groups)  # group 0: corrupted, nothing restored
    probs = []
    subj = torch.tensor(subject, device=device)
    for start in range(0, len(all_groups), per_forward):
        chunk = all_groups[start:start + per_forward]
        rows = 1 + n_samples * len(chunk)
        sites: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        for g, group in enumerate(chunk):
            for kind, layer, token in group:
                sites[kind, layer] += [(1 + g * n_samples + s, token) for s in range(n_samples)]
        handles = [adapter.embed_module(model).register_forward_hook(_noise_hook(subj, noise, len(chunk)))]
        handles += [site_module(adapter, model, kind, layer).register_forward_hook(
            _restore_hook(pairs, rows, ids.numel())) for (kind, layer), pairs in sites.items()]
        try:
            logits = model(input_ids=ids.expand(rows, -1), logits_to_keep=1).logits[:, -1]
        finally:
            for h in handles:
                h.remove()
        p = torch.softmax(logits.double(), dim=-1)[:, answer]  # (rows,)
        p_clean = p[0].item()
        probs.append(p[1:].view(len(chunk), n_samples).mean(1).cpu())
    probs = torch.cat(probs)
    return p_clean, probs[0].item(), probs[1:]


def _noise_hook(subj: torch.Tensor, noise: torch.Tensor, repeats: int):
    def hook(_mod, _args, out):
        out = out.clone()
        out[1:, subj] += noise.repeat(repeats, 1, 1).to(out)
        return out
    return hook


def _restore_hook(pairs: list[tuple[int, int]], rows: int, n_tokens: int):
    row_idx = torch.tensor([r for r, _ in pairs])
    tok_idx = torch.tensor([t for _, t in pairs])

    def hook(_mod, _args, out):
        y = first_tensor(out)
        shape = y.shape
        y = y.reshape(rows, n_tokens, -1).clone()  # OPT's fc2 output arrives flattened (rows*T, d)
        rows_, toks = row_idx.to(y.device), tok_idx.to(y.device)
        y[rows_, toks] = y[0, toks]
        return replace_first(out, y.reshape(shape))
    return hook
