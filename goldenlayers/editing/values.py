"""The v* optimisation (REFERENCE.md section 3, "v*"), for several cases at once.

For each case a vector delta (d_model) is added at the fact token of every row of that case: the prompt in each
context template followed by target_new (teacher forced), and the KL prompt "{subject} is a". The site is the
down-proj output of layer l (ROME, R-ROME) or the block output, i.e. the residual stream (MEMIT, EMMET, at the
last layer of their range). Per case:

    loss = mean over templates of the per-token NLL of target_new
           + kl_factor * KL(current || original)   (next-token distribution at the KL prompt's fact token, as the
                                                     reference code computes it; `kl_direction` selects the other)
           + v_weight_decay * ||delta|| / ||v_init||^2
           + preserve_factor * mean over `preserve_prompts` of the KL at each prompt's last token (an extension;
             none by default)

v_init is the site's output at the fact token of the bare prompt (template "{}"). Adam (lr v_lr); ROME's loop:
at most v_num_grad_steps forwards, the last one only measures; a case stops (keeping its delta) as soon as its
loss < early_stop_loss, or (when `plateau_patience` is set; off in every reference preset) once its loss has not
improved by a factor (1 - plateau_min_improvement) for that many steps; after each step
||delta|| <= clamp_norm_factor * ||v_init||. v* = v_init + delta.

Batching is exact: the loss is the sum of per-case losses, cases share no parameter (Adam is element-wise),
finished cases leave the batch and their deltas are held fixed. The blocks below the site are computed once
(editing.replay.FrozenPrefix), so are the positions before the fact token (editing.suffix), and parameters never
get gradients. On a GPU the steps are replayed as a CUDA graph (editing.graphed): on a warm side stream every
step, after a first forward without gradient that records what the steps replay, else every step after the
first. Finished cases then stay in the replayed batch, their deltas held, until half the batch has finished and
a smaller graph is captured; each Adam step is launched while its replay still runs, before the host has read
the losses, and the cases that stop at that step get their delta back. Some layers run faster kernels for the
same function (models.kernels: one-kernel tanh-GELU; on a GPU in float32, the bias added after the product).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from goldenlayers.cases import EditCase
from goldenlayers.editing.batch import build_rows
from goldenlayers.editing.graphed import (
    StepGraph,
    graphs_wanted,
    mark_warm,
    side_stream,
    stream_warm,
    try_capture,
    without_cudnn_attention,
)
from goldenlayers.editing.hparams import EditHParams
from goldenlayers.editing.keys import fact_keys, template_weights
from goldenlayers.editing.replay import FrozenPrefix
from goldenlayers.editing.suffix import SuffixRows, suffix_cache_supported, suffix_wanted
from goldenlayers.editing.value_loss import LossIndex, case_losses
from goldenlayers.models.adapters import ArchAdapter
from goldenlayers.models.hooks import edit_output, gather_positions, record
from goldenlayers.models.kernels import editing_kernels
from goldenlayers.models.kv_cache import output_cache
from goldenlayers.models.loader import model_device
from goldenlayers.text import model_max_length, pad_id

Site = Literal["down_proj", "block"]
EAGER_STEPS = 1  # v* steps run eagerly before a CUDA graph is captured on a new side stream (they warm it up)


@dataclass
class ValueTargets:
    """v_init, v_star: (n, d_model) float32 at `site` of `layer`; losses: per case, the loss at each step;
    steps: per case, the number of forwards its optimisation ran. For the down-proj site, the keys read in the
    first forward: k_star (n, d_ff) float64, the mean over templates, and k_bare, the bare prompt's key (the
    rows hold prompt + target, and attention is causal, so the key at the fact token is the prompt's)."""

    site: Site
    layer: int
    v_init: torch.Tensor
    v_star: torch.Tensor
    losses: list[list[float]]
    steps: list[int]
    k_star: torch.Tensor | None = None
    k_bare: torch.Tensor | None = None

    def subset(self, idx: list[int]) -> ValueTargets:
        keys = [None if k is None else k[idx] for k in (self.k_star, self.k_bare)]
        return ValueTargets(self.site, self.layer, self.v_init[idx], self.v_star[idx],
                            [self.losses[i] for i in idx], [self.steps[i] for i in idx], *keys)


@contextmanager
def no_param_grads(model: nn.Module) -> Iterator[None]:
    """Eval mode and requires_grad=False on every parameter inside; the previous state is restored on exit."""
    was_training = model.training
    wanted = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in wanted:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in wanted:
            p.requires_grad_(True)
        model.train(was_training)


def site_module(model: nn.Module, adapter: ArchAdapter, site: Site, layer: int) -> nn.Module:
    return adapter.down_proj_module(model, layer) if site == "down_proj" else adapter.block(model, layer)


def optimise_values(model: nn.Module, tok, adapter: ArchAdapter, cases: list[EditCase], templates: list[str],
                    hp: EditHParams, site: Site, layer: int) -> ValueTargets:
    """v* of every case at (`site`, `layer`), optimised together in one batch per step."""
    dev = model_device(model)
    rows = build_rows(tok, cases, templates, with_target=True, kl_prompt=hp.kl_prompt,
                      max_length=model_max_length(model), preserve_prompts=hp.preserve_prompts).to(dev)
    n, d = len(cases), adapter.d_model(model)
    module = site_module(model, adapter, site, layer)
    head = adapter.lm_head_module(model)  # projects only the positions the loss reads (editing.value_loss)
    prefix = FrozenPrefix(adapter.blocks(model), layer if site == "down_proj" else layer + 1)
    # float32 whatever torch's default dtype is (the site's output is cast to it, and the delta to the site's dtype)
    delta = torch.zeros(n, d, device=dev, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=hp.v_lr)
    v_init = torch.zeros(n, d, device=dev, dtype=torch.float32)
    init_kl = torch.zeros(0)
    active = torch.arange(n, device=dev)
    live = torch.ones(n, dtype=torch.bool, device=dev)  # the cases still optimised (not stopped)
    losses: list[list[float]] = [[] for _ in range(n)]
    best, best_at = [float("inf")] * n, [0] * n  # per case: lowest loss so far and its step (plateau stop)
    steps = [0] * n
    view: dict = {}
    k_star = k_bare = None
    n_templated = n * len(templates)  # rows before the KL and preservation rows (build_rows' order)
    use_graphs = graphs_wanted(hp.cuda_graphs, model, hp.v_num_grad_steps)
    # keep the first forward's cache for the suffix layout (editing.suffix)
    cache_kv = suffix_wanted(hp.suffix_replay, model, use_graphs) and hp.v_num_grad_steps > 1
    suffix: SuffixRows | None = None
    graph: StepGraph | None = None
    graph_cases = 0  # how many cases the graph's batch holds

    def inject(out: torch.Tensor) -> torch.Tensor:  # (R', T, d_model), or (R'*T, d_model) for OPT
        r = view["rows"]
        y = r.per_token(out)
        at, fact = torch.arange(len(r.case), device=y.device), r.fact.to(y.device)  # device_map: any device
        if view["first"]:
            bare = (r.template == 0).nonzero()[:, 0]
            v_init[r.case[bare]] = y[bare.to(y.device), fact[bare.to(y.device)]].detach().float().to(dev)
        add = delta[r.case].to(device=y.device, dtype=y.dtype)
        return y.index_put((at, fact), add, accumulate=True).reshape(out.shape)

    def update() -> torch.Tensor:
        """One Adam step of the live cases' deltas, then ||delta|| <= clamp_norm_factor * ||v_init||; the other
        cases' deltas are held. Returns delta as it was before. Never waits on the GPU, so that it can be launched
        while a replayed step still runs."""
        held = delta.detach().clone()
        opt.step()
        with torch.no_grad():
            max_norm = hp.clamp_norm_factor * v_init.norm(dim=1)
            scale = (max_norm / delta.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
            delta.copy_(torch.where(live[:, None], delta * scale[:, None], held))
        return held

    def first_forward() -> torch.Tensor:
        """The whole rows at delta = 0: records v_init, the keys, the output of the blocks below the site, the
        suffix layout and the KL reference distributions; returns the per-case loss (n,) (no KL term: it is 0)."""
        nonlocal suffix, init_kl, k_star, k_bare
        view["rows"], view["first"] = rows, True
        keys = record({"k": module}, outputs=False) if site == "down_proj" else nullcontext({})
        ix = LossIndex.of(rows, hp)
        with prefix.recording(), keys as seen, gather_positions(head, ix.read):
            out = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask, use_cache=cache_kv)
        if cache_kv and suffix_cache_supported(output_cache(out)):
            suffix = SuffixRows(rows, output_cache(out), pad_id(tok))
            prefix.map_output(suffix.gather_hidden)
        if "k" in seen:
            k_star, k_bare = fact_keys(rows, rows.per_token(seen["k"]["in"]), n,
                                       template_weights(hp.context_templates, hp.key_averaging))
        per_case, init_kl = case_losses(out.logits.to(dev), rows, ix, n, len(templates), None, hp)
        init_kl = init_kl.detach()
        return per_case + weight_decay()

    def weight_decay() -> torch.Tensor:  # (n,)
        return hp.v_weight_decay * delta.norm(dim=1) / v_init.norm(dim=1).clamp_min(1e-12) ** 2

    def later_step(row_idx: torch.Tensor):
        """The loss function of a step after `first_forward`, for the rows `row_idx`: () -> per-case loss (n,).
        Its index work is done here, so that calling it never waits on the GPU (editing.graphed)."""
        r = suffix.rows.index(row_idx) if suffix is not None else rows.index(row_idx)
        ix = LossIndex.of(r, hp)
        ref = init_kl[row_idx[ix.kl_rows] - n_templated]

        def loss() -> torch.Tensor:
            kw = suffix.inputs(model, row_idx, r) if suffix is not None else \
                dict(input_ids=r.input_ids, attention_mask=r.attention_mask, use_cache=False)
            view["rows"], view["first"] = r, False
            with prefix.replaying(row_idx), gather_positions(head, ix.read):
                logits = model(**kw).logits.to(dev)
            return case_losses(logits, r, ix, n, len(templates), ref, hp)[0] + weight_decay()
        return loss

    def graphed_step(row_idx: torch.Tensor):
        """() -> per-case loss (n,) and its gradient in `delta.grad`: what a CUDA graph records."""
        loss_fn = later_step(row_idx)  # index work before the capture

        def step() -> torch.Tensor:
            loss = loss_fn()
            # the gradient tensor is the graph's: replays refill it (finished cases' gradients are unused: their
            # deltas are restored after the Adam step)
            delta.grad, = torch.autograd.grad(loss.sum(), delta)
            return loss.detach()
        return step

    last = hp.v_num_grad_steps - 1  # the last forward only measures
    with no_param_grads(model), editing_kernels(model, use_graphs), edit_output(module, inject), \
            without_cudnn_attention(dev.type == "cuda"), side_stream(use_graphs, dev) as stream:
        # on a stream that has run an eager step before, every step is replayed, the first one too: the first
        # forward then needs no gradient, and the graph is captured before any backward
        ahead = use_graphs and stream_warm(stream)
        if ahead:
            with torch.no_grad():
                first_forward()
            graph = try_capture(graphed_step(rows.rows_of(active)), stream, "the v* step", model)
            graph_cases, use_graphs = n, graph is not None
        for step in range(hp.v_num_grad_steps):
            held = None  # delta before an update launched ahead of this step's stop decisions
            if step == 0 and not ahead:
                cur_all = first_forward()
            elif graph is not None:
                cur_all = graph.replay()
                if step < last:  # launched while the replay runs; the cases that stop here get `held` back below
                    held = update()
            else:
                cur_all = later_step(rows.rows_of(active))()
            cur = cur_all[active]
            keep = cur.detach() >= hp.early_stop_loss
            for j, (c, value) in enumerate(zip(active.tolist(), cur.detach().tolist(), strict=True)):
                losses[c].append(value)
                steps[c] = step + 1
                if value < best[c] * (1 - hp.plateau_min_improvement):
                    best[c], best_at[c] = value, step
                elif hp.plateau_patience is not None and step - best_at[c] >= hp.plateau_patience:
                    keep[j] = False  # stalled: stop here, like an early stop
            go = active[keep]
            if len(go) < len(active):
                live[active[~keep]] = False
                if held is not None:
                    with torch.no_grad():
                        delta.copy_(torch.where(live[:, None], delta, held))
            if step == last or len(go) == 0:
                break
            if held is None:
                opt.zero_grad(set_to_none=True)
                cur[keep].sum().backward()
                update()
                if stream is not None and step + 1 == EAGER_STEPS:
                    mark_warm(stream)
            active = go
            if use_graphs and step + 1 >= EAGER_STEPS and hp.v_num_grad_steps - step > 2 and \
                    (graph is None or 2 * len(active) <= graph_cases):  # (re)capture for the remaining batch
                if graph is not None:
                    graph.retire()
                graph = cur_all = cur = delta.grad = None
                graph = try_capture(graphed_step(rows.rows_of(active)), stream, "the v* step", model)
                graph_cases, use_graphs = len(active), graph is not None
    delta.grad = None
    if graph is not None:
        graph.retire()
    return ValueTargets(site, layer, v_init, (v_init + delta.detach()), losses, steps, k_star, k_bare)
