"""The v* optimisation (the paper's section 3; docs/editing.md "v*"), for several cases at once.

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
finished cases leave the batch and their deltas are held fixed. How the forwards run (the blocks below the site
replayed, later steps over the positions from the fact token on, CUDA graphs, faster kernels) is the step
runner's business (editing.accel), chosen by `ExecOptions`, which never change the result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from goldenlayers.cases import EditCase
from goldenlayers.editing.accel import ExecOptions, Forwards, default_options, step_runner
from goldenlayers.editing.batch import build_rows
from goldenlayers.editing.hparams import EditHParams
from goldenlayers.editing.keys import fact_keys, template_weights
from goldenlayers.models.adapters import ArchAdapter
from goldenlayers.models.loader import model_device
from goldenlayers.text import model_max_length

Site = Literal["down_proj", "block"]


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


def site_module(model: nn.Module, adapter: ArchAdapter, site: Site, layer: int) -> nn.Module:
    return adapter.down_proj_module(model, layer) if site == "down_proj" else adapter.block(model, layer)


class ClampedAdam:
    """ROME's descent on delta (n, d): Adam (lr v_lr), then ||delta|| <= clamp_norm_factor * ||v_init|| per case;
    the delta of a stopped case is held. `step` never waits on the GPU and returns delta as it was before, so
    that a step runner can launch it before the losses are read and give a case that stops then its delta back
    (`stop(cases, held)`)."""

    def __init__(self, delta: torch.Tensor, v_init: torch.Tensor, hp: EditHParams):
        self.delta, self.v_init, self.clamp = delta, v_init, hp.clamp_norm_factor
        self.opt = torch.optim.Adam([delta], lr=hp.v_lr)
        self.live = torch.ones(len(delta), dtype=torch.bool, device=delta.device)  # the cases still optimised

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> torch.Tensor:
        held = self.delta.detach().clone()
        self.opt.step()
        with torch.no_grad():
            max_norm = self.clamp * self.v_init.norm(dim=1)
            scale = (max_norm / self.delta.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
            self.delta.copy_(torch.where(self.live[:, None], self.delta * scale[:, None], held))
        return held

    def stop(self, cases: torch.Tensor, held: torch.Tensor | None = None) -> None:
        """`cases` stop; with `held` (delta before a step already taken), they get that delta back."""
        self.live[cases] = False
        if held is not None:
            with torch.no_grad():
                self.delta.copy_(torch.where(self.live[:, None], self.delta, held))


def optimise_values(model: nn.Module, tok, adapter: ArchAdapter, cases: list[EditCase], templates: list[str],
                    hp: EditHParams, site: Site, layer: int, options: ExecOptions | None = None) -> ValueTargets:
    """v* of every case at (`site`, `layer`), optimised together in one batch per step. `options`: how the steps
    run (default: `default_options()`, i.e. "auto" unless GOLDENLAYERS_ACCEL says otherwise)."""
    return _optimise(model, tok, adapter, cases, templates, hp, site, [layer], options)[layer]


def optimise_values_layers(model: nn.Module, tok, adapter: ArchAdapter, cases: list[EditCase],
                           templates: list[str], hp: EditHParams, site: Site, layers: list[int],
                           options: ExecOptions | None = None) -> dict[int, ValueTargets]:
    """v* of every case at every layer of `layers` (the same `site` of each), all (case, layer) pairs optimised
    together in one batch per step: {layer: ValueTargets of `cases`}. Each pair is a case of its own (rows, delta,
    stop decisions), with its delta added at its layer's site only, so the result is the one `optimise_values`
    gives layer by layer, up to floating-point rounding; the forwards of all layers are shared."""
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers repeat: {layers}")
    return _optimise(model, tok, adapter, cases, templates, hp, site, list(layers), options)


def _optimise(model: nn.Module, tok, adapter: ArchAdapter, cases: list[EditCase], templates: list[str],
              hp: EditHParams, site: Site, layers: list[int], options: ExecOptions | None) -> dict[int, ValueTargets]:
    """The loop of the module docstring over the pairs (case, layer), layer-major."""
    dev = model_device(model)
    pairs = [c for _ in layers for c in cases]  # pair i: case i % len(cases) at layers[i // len(cases)]
    rows = build_rows(tok, pairs, templates, with_target=True, kl_prompt=hp.kl_prompt,
                      max_length=model_max_length(model), preserve_prompts=hp.preserve_prompts).to(dev)
    n, d = len(pairs), adapter.d_model(model)
    site_of = torch.arange(len(layers), device=dev).repeat_interleave(len(cases))  # (n,) index into layers
    # float32 whatever torch's default dtype is (the site's output is cast to it, and the delta to the site's dtype)
    delta = torch.zeros(n, d, device=dev, dtype=torch.float32, requires_grad=True)
    v_init = torch.zeros(n, d, device=dev, dtype=torch.float32)  # written by the first forward
    descent = ClampedAdam(delta, v_init, hp)
    keys: dict[str, torch.Tensor] = {}

    def weight_decay() -> torch.Tensor:  # (n,)
        return hp.v_weight_decay * delta.norm(dim=1) / v_init.norm(dim=1).clamp_min(1e-12) ** 2

    def read_keys(per_site: list[torch.Tensor]) -> None:  # each site's down-proj input per token, first forward
        weights = template_weights(hp.context_templates, hp.key_averaging)
        for j, k in enumerate(per_site):
            k_star, k_bare = fact_keys(rows, k, n, weights)
            mine = (site_of == j)[:, None].to(k_star.device)
            keys["k_star"] = torch.where(mine, k_star, keys["k_star"]) if j else k_star
            keys["k_bare"] = torch.where(mine, k_bare, keys["k_bare"]) if j else k_bare

    plan = (options or default_options()).plan(model, hp.v_num_grad_steps)
    lowest = min(layers)
    fw = Forwards(model, tok, rows, hp, len(templates), [site_module(model, adapter, site, la) for la in layers],
                  adapter.lm_head_module(model),  # projects only the positions the loss reads (editing.value_loss)
                  adapter.blocks(model), lowest if site == "down_proj" else lowest + 1, delta, v_init, weight_decay,
                  read_keys if site == "down_proj" else None, plan.suffix, site_of)
    losses: list[list[float]] = [[] for _ in range(n)]
    best, best_at = [float("inf")] * n, [0] * n  # per pair: lowest loss so far and its step (plateau stop)
    steps = [0] * n
    active = torch.arange(n, device=dev)
    last = hp.v_num_grad_steps - 1  # the last forward only measures
    with step_runner(fw, descent, hp.v_num_grad_steps, plan) as run:
        for step in range(hp.v_num_grad_steps):
            cur = run.loss(active)[active]
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
                run.stop(active[~keep])
            if step == last or len(go) == 0:
                break
            run.descend(cur[keep])
            active = go
    whole = ValueTargets(site, lowest, v_init, v_init + delta.detach(), losses, steps, keys.get("k_star"),
                         keys.get("k_bare"))
    m = len(cases)
    return {layer: replace(whole.subset(list(range(j * m, (j + 1) * m))), layer=layer)
            for j, layer in enumerate(layers)}
