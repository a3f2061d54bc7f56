"""Step runners of the v* optimisation: how its forwards run, behind the plain loop of editing.values.

editing.values writes ROME's loop (docs/editing.md "v*"): per step the per-case loss at the current delta, the
stop decisions, then one descent step (gradient of the kept cases' losses, Adam, norm clamp). A runner provides
those three operations:

    loss(active)  the per-case loss (n,) at the current delta; the entries of the cases in `active` are read
    stop(cases)   these cases stop: their delta is held from now on
    descend(loss) gradient of `loss` (the kept cases' losses) and one step of the descent

`Forwards` computes the loss: the first forward runs the whole rows at delta = 0 and records what later forwards
reuse (v_init, the keys of a down-proj site, the output of the blocks below the site: editing.accel.replay, the
key/value cache for the suffix layout: editing.accel.suffix, the KL reference distributions); a later forward
runs the rows of the active cases, in the suffix layout when the plan says so, with the frozen blocks replayed.

`EagerSteps` launches every step from Python. `GraphSteps` (a model on one CUDA device, editing.accel.graphs)
replays a step (forward, loss, gradient) captured as a CUDA graph: on a warm side stream every step, the first
forward then running without gradient before the capture; else every step after the first. The finished cases
stay in the replayed batch with their delta held until half the batch has finished and a smaller graph is
captured. Each descent step is launched while its replay still runs, before the host reads the losses (`loss`
returns after launching it); `stop` gives the cases that stop at that step their delta back, and `descend` has
nothing left to do. `step_runner` chooses the runner for an `ExecPlan` and holds, for the optimisation, what
every runner needs: no parameter gradients, the kernel swaps (editing.accel.kernels), the delta injected at the
site, attention off cuDNN's kernels on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Protocol

import torch
from torch import nn

from goldenlayers.editing.accel.graphs import GraphState, StepGraph, graph_state, without_cudnn_attention
from goldenlayers.editing.accel.kernels import editing_kernels
from goldenlayers.editing.accel.options import ExecPlan
from goldenlayers.editing.accel.replay import FrozenPrefix
from goldenlayers.editing.accel.suffix import SuffixRows, suffix_cache_supported
from goldenlayers.editing.batch import Rows
from goldenlayers.editing.hparams import EditHParams
from goldenlayers.editing.value_loss import LossIndex, case_losses
from goldenlayers.models.hooks import edit_output, gather_positions, record
from goldenlayers.models.kv_cache import output_cache
from goldenlayers.text import pad_id

EAGER_STEPS = 1  # v* steps run eagerly before a CUDA graph is captured on a cold side stream (they warm it up)


class Descent(Protocol):
    """The optimiser of delta (editing.values.ClampedAdam)."""

    def zero_grad(self) -> None: ...

    def step(self) -> torch.Tensor: ...  # one step; returns delta as it was before, never waits on the GPU

    def stop(self, cases: torch.Tensor, held: torch.Tensor | None = None) -> None: ...


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


class Forwards:
    """The forwards of one v* optimisation of `n` cases over `rows` (n_templates templated rows per case, then the
    KL and preservation rows), `delta` (n, d_model) added at the fact token of every row at the output of
    `module`, or, with several modules (the sites of several layers optimised in one batch), at the output of
    `module[site_of[case]]` for the rows of each case. The first forward writes the site's output at the bare
    prompt's fact token into `v_init`, hands the per-token input of each module (a list, in module order) to
    `on_keys` (when given) and returns the loss without a KL term; every loss adds `penalty()` (n,). `upto`: the
    blocks below the lowest site (computed once, then replayed)."""

    def __init__(self, model: nn.Module, tok, rows: Rows, hp: EditHParams, n_templates: int,
                 module: nn.Module | Sequence[nn.Module], head: nn.Module, blocks: nn.ModuleList, upto: int,
                 delta: torch.Tensor, v_init: torch.Tensor, penalty: Callable[[], torch.Tensor],
                 on_keys: Callable[[list[torch.Tensor]], None] | None, suffix: bool,
                 site_of: torch.Tensor | None = None):
        self.model, self.tok, self.rows, self.hp = model, tok, rows, hp
        self.n, self.n_templates = len(delta), n_templates
        self.modules = [module] if isinstance(module, nn.Module) else list(module)
        if len(self.modules) > 1 and (site_of is None or len(site_of) != len(delta)):
            raise ValueError("several sites need site_of: the site index of every case")
        self.site_of = site_of
        self.head, self.prefix = head, FrozenPrefix(blocks, upto)
        self.delta, self.v_init, self.penalty, self.on_keys = delta, v_init, penalty, on_keys
        self.cache_kv = suffix  # keep the first forward's cache for the suffix layout
        self.suffix: SuffixRows | None = None
        self.init_kl = torch.zeros(0)
        self.started = False  # the first forward has run
        self._rows, self._first = rows, False  # the rows of the forward running now, and whether it is the first

    @contextmanager
    def injected(self) -> Iterator[None]:
        """Inside, the model's forwards add delta at the sites (`inject`)."""
        with ExitStack() as stack:
            for j, module in enumerate(self.modules):
                stack.enter_context(edit_output(module, lambda out, j=j: self.inject(out, j)))
            yield

    def inject(self, out: torch.Tensor, site: int = 0) -> torch.Tensor:  # (R', T, d_model), or (R'*T, d) for OPT
        r, dev = self._rows, self.delta.device
        y = r.per_token(out)
        at, fact = torch.arange(len(r.case), device=y.device), r.fact.to(y.device)  # device_map: any device
        mine = None if len(self.modules) == 1 else (self.site_of.to(dev)[r.case.to(dev)] == site)  # rows of this site
        if self._first:
            is_bare = r.template == 0
            bare = (is_bare if mine is None else is_bare & mine.to(is_bare.device)).nonzero()[:, 0]
            self.v_init[r.case[bare]] = y[bare.to(y.device), fact[bare.to(y.device)]].detach().float().to(dev)
        add = self.delta[r.case]
        if mine is not None:
            add = add * mine[:, None].to(add.dtype)
        return y.index_put((at, fact), add.to(device=y.device, dtype=y.dtype), accumulate=True).reshape(out.shape)

    def first(self) -> torch.Tensor:
        """The whole rows at delta = 0; returns the per-case loss (n,) (no KL term: it is 0)."""
        rows, hp, dev = self.rows, self.hp, self.delta.device
        self._rows, self._first = rows, True
        keys = record({f"k{j}": m for j, m in enumerate(self.modules)}, outputs=False) if self.on_keys is not None \
            else nullcontext({})
        ix = LossIndex.of(rows, hp)
        with self.prefix.recording(), keys as seen, gather_positions(self.head, ix.read):
            out = self.model(input_ids=rows.input_ids, attention_mask=rows.attention_mask, use_cache=self.cache_kv)
        self._first, self.started = False, True
        if self.cache_kv and suffix_cache_supported(output_cache(out)):
            self.suffix = SuffixRows(rows, output_cache(out), pad_id(self.tok))
            self.prefix.map_output(self.suffix.gather_hidden)
        if self.on_keys is not None:
            self.on_keys([rows.per_token(seen[f"k{j}"]["in"]) for j in range(len(self.modules))])
        per_case, init_kl = case_losses(out.logits.to(dev), rows, ix, self.n, self.n_templates, None, hp)
        self.init_kl = init_kl.detach()
        return per_case + self.penalty()

    def rows_of(self, active: torch.Tensor) -> torch.Tensor:
        return self.rows.rows_of(active)

    def loss(self, row_idx: torch.Tensor) -> Callable[[], torch.Tensor]:
        """The loss function of a forward after the first, over the rows `row_idx`: () -> per-case loss (n,). Its
        index work is done here, so that calling it never waits on the GPU (a CUDA graph may record it)."""
        hp, dev, suffix = self.hp, self.delta.device, self.suffix
        r = suffix.rows.index(row_idx) if suffix is not None else self.rows.index(row_idx)
        ix = LossIndex.of(r, hp)
        ref = self.init_kl[row_idx[ix.kl_rows] - self.n * self.n_templates]  # KL rows follow the templated ones

        def loss() -> torch.Tensor:
            kw = suffix.inputs(self.model, row_idx, r) if suffix is not None else \
                dict(input_ids=r.input_ids, attention_mask=r.attention_mask, use_cache=False)
            self._rows = r
            with self.prefix.replaying(row_idx), gather_positions(self.head, ix.read):
                logits = self.model(**kw).logits.to(dev)
            return case_losses(logits, r, ix, self.n, self.n_templates, ref, hp)[0] + self.penalty()
        return loss

    def loss_and_grad(self, row_idx: torch.Tensor) -> Callable[[], torch.Tensor]:
        """() -> per-case loss (n,), detached, and its gradient in `delta.grad`: what a CUDA graph records."""
        loss_fn = self.loss(row_idx)  # index work before the capture

        def step() -> torch.Tensor:
            loss = loss_fn()
            # the gradient tensor is the graph's: replays refill it (finished cases' gradients are unused: their
            # deltas are held by the descent)
            self.delta.grad, = torch.autograd.grad(loss.sum(), self.delta)
            return loss.detach()
        return step


class EagerSteps:
    """Every step launched from Python: the first forward, then later forwards of the active cases' rows."""

    def __init__(self, fw: Forwards, descent: Descent):
        self.fw, self.descent = fw, descent

    def loss(self, active: torch.Tensor) -> torch.Tensor:
        return self.fw.loss(self.fw.rows_of(active))() if self.fw.started else self.fw.first()

    def stop(self, cases: torch.Tensor) -> None:
        self.descent.stop(cases)

    def descend(self, loss: torch.Tensor) -> None:
        self.descent.zero_grad()
        loss.sum().backward()
        self.descent.step()

    def close(self) -> None:
        self.fw.delta.grad = None


class GraphSteps(EagerSteps):
    """Steps replayed as a CUDA graph on the model's side stream (`state`, editing.accel.graphs); see the module
    docstring. Falls back to eager steps when a capture fails."""

    def __init__(self, fw: Forwards, descent: Descent, n_steps: int, state: GraphState):
        super().__init__(fw, descent)
        self.n_steps, self.state = n_steps, state
        self.graph: StepGraph | None = None
        self.cases = 0  # how many cases the graph's batch holds
        self.enabled = True  # False once a capture failed
        self.step = 0  # the step `loss` computes next
        self.held: torch.Tensor | None = None  # delta before a descent step launched ahead of the stop decisions
        # on a stream that has run an eager step before, every step is replayed, the first one too: the first
        # forward then needs no gradient, and the graph is captured before any backward
        if state.warm:
            with torch.no_grad():
                fw.first()
            self._capture(torch.arange(fw.n, device=fw.delta.device))

    def _capture(self, active: torch.Tensor) -> None:
        if self.graph is not None:
            self.graph.retire()
        self.graph = self.fw.delta.grad = None  # their memory is free for the new capture
        self.graph = self.state.capture(self.fw.loss_and_grad(self.fw.rows_of(active)), "the v* step", self.fw.model)
        self.cases, self.enabled = len(active), self.graph is not None

    def loss(self, active: torch.Tensor) -> torch.Tensor:
        step = self.step
        self.step += 1
        if self.enabled and step >= EAGER_STEPS and self.n_steps - step > 1 and \
                (self.graph is None or 2 * len(active) <= self.cases):  # (re)capture for the remaining batch
            self._capture(active)
        if self.graph is None:
            return super().loss(active)
        loss = self.graph.replay()
        if step < self.n_steps - 1:  # launched while the replay runs; the cases that stop here get `held` back
            self.held = self.descent.step()
        return loss

    def stop(self, cases: torch.Tensor) -> None:
        self.descent.stop(cases, self.held)

    def descend(self, loss: torch.Tensor) -> None:
        if self.held is None:  # an eager step: the first one of a cold stream, or no graph
            super().descend(loss)
            if self.step == EAGER_STEPS:
                self.state.mark_warm()
        self.held = None

    def close(self) -> None:
        super().close()
        if self.graph is not None:
            self.graph.retire()


@contextmanager
def step_runner(fw: Forwards, descent: Descent, n_steps: int, plan: ExecPlan) -> Iterator[EagerSteps]:
    """The runner of `plan` for an optimisation of at most `n_steps` forwards, with what it needs held inside."""
    model, dev = fw.model, fw.delta.device
    state = graph_state(model) if plan.graphs else None
    runner: EagerSteps | None = None
    try:
        with ExitStack() as stack:
            stack.enter_context(no_param_grads(model))
            if plan.kernels:
                stack.enter_context(editing_kernels(model, plan.graphs))
            stack.enter_context(fw.injected())
            stack.enter_context(without_cudnn_attention(dev.type == "cuda"))
            if state is not None:
                stack.enter_context(state.side_stream(dev))
                runner = GraphSteps(fw, descent, n_steps, state)
            else:
                runner = EagerSteps(fw, descent)
            yield runner
    finally:
        if runner is not None:
            runner.close()
