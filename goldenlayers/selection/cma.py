"""CMA layer selection (causal tracing, faithful to ROME) and per-case heatmaps.

docs/equations.md "CMA"; the paper's baseline selector (sections 4-5, [25]). For every case the model
knows (known-fact filter: the clean greedy next token equals the answer's first token, i.e. the token that
follows the prompt's own tokens when `prompt + " " + ground_truth[0]` is tokenised; without a ground truth
the answer is the model's own prediction, known by definition), the indirect effect

    IE(t, l) = p_restored(t, l) - p_corrupted

of the answer's first token is measured with the machinery of goldenlayers.selection.tracing. The CMA layer
of a set is the argmax over l of the mean IE of the chosen kind ("mlp" by default) at the last subject token,
restoring a window of layers around l (window 10 gives ROME's window centre, window 1 a single layer;
`cma_scores_windows` computes several windows from the same runs). Cost per case: about
1 + S (1 + L x windows) rows, packed into forwards of `batch_size` rows.

`trace_case` gives the full heatmap (kind x token x layer) of one case; `plot_trace` draws it. `cma_select` is
the selector's scoring function in the registry's calling convention (goldenlayers.selection.registry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from goldenlayers.cases import CaseError, EditCase, subject_token_indices
from goldenlayers.models.adapters import ArchAdapter, get_adapter
from goldenlayers.models.loader import model_device
from goldenlayers.selection.table import LayerScores, dataset_label, model_label
from goldenlayers.selection.tracing import (
    KINDS,
    Kind,
    draw_noise,
    embedding_noise_std,
    restored_probs,
    window_layers,
)
from goldenlayers.text import encode_prompts, join_prompt_answer, model_max_length

ROME_WINDOWS = {"residual": 1, "mlp": 10, "attn": 10}


class CMASettings(BaseModel):
    """Causal-tracing options. window: the restored window around each layer (10: ROME's window centre, 1: a
    single layer). `noise_std`, when given, is the absolute noise std (noise_scale is then unused); otherwise
    std = noise_scale x embedding_noise_std(basis). batch_size counts rows per forward. seed: of the noise (None:
    the caller's, `seeds.torch` in a run, else 0)."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = "mlp"
    window: int = Field(10, ge=1)
    noise_samples: int = Field(10, ge=1)
    noise_scale: float = Field(3.0, gt=0)
    noise_std: float | None = Field(None, gt=0)
    noise_basis: Literal["subjects", "embeddings"] = "subjects"
    batch_size: int = Field(256, ge=2)
    seed: int | None = None
    known_only: bool = True

    @property
    def name(self) -> str:
        """The selector's name in tables and run stores: "cma-<kind>-w<window>"."""
        return f"cma-{self.kind}-w{self.window}"


@dataclass
class TracedCase:
    """A case ready for tracing: ids (T,), subject token indices, the answer's first token and the clean
    prediction at the last prompt token."""

    case: EditCase
    ids: torch.Tensor
    subject: list[int]
    answer: str
    answer_token: int
    predicted_token: int

    @property
    def known(self) -> bool:
        return self.answer_token == self.predicted_token


@torch.no_grad()
def prepare_cases(model, tok, cases: list[EditCase], batch_size: int = 32
                  ) -> tuple[list[TracedCase], dict[str, str]]:
    """Tokenise, locate subjects and answers, and run the clean prompts (batched) for the known-fact filter."""
    ready, skipped, limit = [], {}, model_max_length(model)
    for c in cases:
        try:
            ids = tok(c.prompt)["input_ids"]
            subject = subject_token_indices(tok, c.prompt, c.subject, c.case_id)
            if limit is not None and len(ids) > limit:
                raise CaseError(c.case_id, "prompt", f"{len(ids)} tokens, longer than the model's {limit}")
            token = None
            if c.old_answer:  # the first token after the prompt's own tokens in prompt + " " + answer
                full = tok(join_prompt_answer(c.prompt, c.old_answer))["input_ids"]
                if full[:len(ids)] != ids or len(full) == len(ids):
                    raise CaseError(c.case_id, "ground_truth", "the prompt's last token merges with the answer")
                token = full[len(ids)]
            ready.append((c, ids, subject, token))
        except CaseError as e:
            skipped[c.case_id] = str(e)
    out = []
    for start in range(0, len(ready), batch_size):
        chunk = ready[start:start + batch_size]
        batch = encode_prompts(tok, [c.prompt for c, *_ in chunk], limit, model_device(model))
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        predicted = logits[torch.arange(len(chunk)), batch.last].argmax(-1).tolist()
        for (c, ids, subject, token), pred in zip(chunk, predicted, strict=True):
            answer = c.old_answer or tok.decode([pred])
            out.append(TracedCase(c, torch.tensor(ids), subject, answer, pred if token is None else token, pred))
    return out, skipped


def _noise_std(model, tok, adapter, traced: list[TracedCase], s: CMASettings) -> float:
    if s.noise_std is not None:
        return s.noise_std
    return s.noise_scale * embedding_noise_std(model, tok, [t.case for t in traced], adapter, s.noise_basis)


def cma_scores_windows(model, tok, cases: list[EditCase], kind: str = "mlp", windows=(1, 10),
                       noise_samples: int = 10, noise_scale: float = 3.0, batch_size: int = 256, seed: int = 0,
                       adapter: ArchAdapter | None = None, layers: list[int] | None = None,
                       noise_std: float | None = None, noise_basis: str = "subjects", known_only: bool = True,
                       progress: bool = True, model_name: str | None = None) -> dict[int, LayerScores]:
    """CMA scores for each window from one set of runs: {window: LayerScores (per-case IE at the last subject
    token, kept cases x layers)}. `seconds` is the time of the joint run."""
    windows = tuple(windows)
    s = CMASettings(kind=kind, noise_samples=noise_samples, noise_scale=noise_scale, noise_std=noise_std,
                    noise_basis=noise_basis, batch_size=batch_size, seed=seed, known_only=known_only)
    start = time.perf_counter()
    adapter = adapter or get_adapter(model)
    n_layers = adapter.n_layers(model)
    layers = sorted(adapter.check_layer(model, layer) for layer in (layers or range(n_layers)))
    traced, skipped = prepare_cases(model, tok, cases)
    std = _noise_std(model, tok, adapter, traced, s) if traced else 0.0
    d_embed = adapter.embed_module(model).weight.shape[1]
    kept, ies, p_clean, p_corrupt = [], [], [], []
    for t in tqdm(traced, desc="CMA", disable=not progress):
        if s.known_only and not t.known:
            skipped[t.case.case_id] = str(CaseError(
                t.case.case_id, "ground_truth",
                f"unknown fact: the model predicts {tok.decode([t.predicted_token])!r}, not {t.answer!r}"))
            continue
        noise = draw_noise(s.noise_samples, len(t.subject), d_embed, std, s.seed)
        groups = [[(s.kind, j, t.subject[-1]) for j in window_layers(layer, w, n_layers)]
                  for w in windows for layer in layers]
        pc, pk, pr = restored_probs(model, adapter, t.ids, t.subject, t.answer_token, noise, groups, s.batch_size)
        kept.append(t.case.case_id)
        ies.append((pr - pk).numpy().reshape(len(windows), len(layers)))
        p_clean.append(pc)
        p_corrupt.append(pk)
    ie = np.stack(ies) if ies else np.zeros((0, len(windows), len(layers)))
    seconds = time.perf_counter() - start
    name = model_name or model_label(model)
    meta = dict(s.model_dump(exclude={"window"}), windows=windows, noise_std_used=std, known=len(kept),
                total=len(cases),
                p_clean=float(np.mean(p_clean)) if kept else None,
                p_corrupted=float(np.mean(p_corrupt)) if kept else None)
    return {w: LayerScores.from_per_case(f"cma-{s.kind}-w{w}", dataset_label(c.dataset for c in cases), name,
                                         layers, ie[:, i], kept, seconds=seconds, skipped=dict(skipped),
                                         meta=dict(meta, window=w))
            for i, w in enumerate(windows)}


def cma_scores(model, tok, cases: list[EditCase], kind: str = "mlp", window: int = 10, noise_samples: int = 10,
               noise_scale: float = 3.0, batch_size: int = 256, seed: int = 0, **kw) -> LayerScores:
    """CMA layer scores: mean IE of `kind` at the last subject token per window centre (see module doc)."""
    return cma_scores_windows(model, tok, cases, kind, (window,), noise_samples, noise_scale, batch_size, seed,
                              **kw)[window]


def cma_select(inp, s: CMASettings) -> LayerScores:
    """The CMA selector's scoring function (goldenlayers.selection.registry.SelectionInput): `cma_scores` with the
    settings `s` (seed None: the input's seed)."""
    return cma_scores(inp.model, inp.tok, list(inp.cases), kind=s.kind, window=s.window,
                      noise_samples=s.noise_samples, noise_scale=s.noise_scale, batch_size=s.batch_size,
                      seed=inp.seed if s.seed is None else s.seed, layers=inp.layers, noise_std=s.noise_std,
                      noise_basis=s.noise_basis, known_only=s.known_only, progress=inp.progress,
                      model_name=inp.model_name)


def trace_case(model, tok, case: EditCase, kinds=KINDS, window: int | dict[str, int] | None = None,
               noise_samples: int = 10, noise_scale: float = 3.0, noise_std: float | None = None, seed: int = 0,
               batch_size: int = 256, adapter: ArchAdapter | None = None) -> dict:
    """Full causal trace of one case: IE arrays (T tokens x L layers) per kind.

    window: one int for all kinds or {kind: window}; default ROME's (residual 1, mlp 10, attn 10). The noise
    std is noise_scale x the std of this case's subject embeddings unless `noise_std` is given.
    Raises CaseError for unusable data. Keys: case_id, tokens, subject, answer, answer_token, known,
    p_clean, p_corrupted, noise_std, windows, ie {kind: ndarray (T, L)}.
    """
    adapter = adapter or get_adapter(model)
    traced, skipped = prepare_cases(model, tok, [case])
    if skipped:
        raise CaseError(case.case_id, "prompt", skipped[case.case_id])
    t = traced[0]
    windows = dict(ROME_WINDOWS) if window is None else (
        {k: window for k in kinds} if isinstance(window, int) else dict(window))
    s = CMASettings(noise_samples=noise_samples, noise_scale=noise_scale, noise_std=noise_std, seed=seed,
                    batch_size=batch_size)
    std = _noise_std(model, tok, adapter, traced, s)
    n_layers, n_tokens = adapter.n_layers(model), t.ids.numel()
    noise = draw_noise(noise_samples, len(t.subject), adapter.embed_module(model).weight.shape[1], std, seed)
    groups = [[(k, j, tok_i) for j in window_layers(layer, windows[k], n_layers)]
              for k in kinds for tok_i in range(n_tokens) for layer in range(n_layers)]
    pc, pk, pr = restored_probs(model, adapter, t.ids, t.subject, t.answer_token, noise, groups, batch_size)
    ie = (pr - pk).numpy().reshape(len(kinds), n_tokens, n_layers)
    return dict(case_id=case.case_id, tokens=tok.convert_ids_to_tokens(t.ids.tolist()), subject=t.subject,
                answer=t.answer, answer_token=t.answer_token, known=t.known, p_clean=pc, p_corrupted=pk,
                noise_std=std, windows={k: windows[k] for k in kinds}, ie={k: ie[i] for i, k in enumerate(kinds)})


def plot_trace(trace: dict, path) -> str:
    """Save a PNG with one heatmap (tokens x layers, colour = IE) per traced kind; subject tokens starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(trace["ie"])
    labels = [f"{t}*" if i in trace["subject"] else t for i, t in enumerate(trace["tokens"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 0.3 * len(labels) + 1.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        im = ax.imshow(trace["ie"][kind], aspect="auto", cmap="Purples")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("layer")
        ax.set_title(f"{kind} (window {trace['windows'][kind]})")
        fig.colorbar(im, ax=ax, label="IE")
    fig.suptitle(f"case {trace['case_id']}: p({trace['answer']!r}) clean {trace['p_clean']:.3f}, "
                 f"corrupted {trace['p_corrupted']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
