"""The CUDA-graph replay of the v* step (editing.accel.graphs, editing.accel.runner): same v* as the eager steps.

On a CPU the capture is replaced by a stand-in that calls the recorded step function at every replay, which checks
everything the graph path changes in the optimisation loop (a fixed batch whose finished cases stay in it, the
gradient handed over through `delta.grad`, re-capture when half the batch has finished, no host synchronisation
needed by the loss). With a CUDA device the real capture is compared against eager steps as well.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from contextlib import contextmanager

import pytest
import torch
from editing_helpers import setup_tiny
from test_editing_values import CASES, FAST

import goldenlayers.editing.accel.options as options_mod
import goldenlayers.editing.accel.runner as runner_mod
from goldenlayers.editing import resolve_settings
from goldenlayers.editing.accel import ExecOptions
from goldenlayers.editing.accel.graphs import graph_state, graphs_wanted
from goldenlayers.editing.values import optimise_values

TEMPLATES = ["{}", "A long sentence of context here. {}", "Short. {}"]


class CallEachTime:
    """Stand-in for StepGraph on a CPU: `replay` calls the captured function again."""

    made: list[int] = []

    def __init__(self, fn):
        self.fn = fn
        self.out = fn()
        CallEachTime.made.append(1)

    def replay(self):
        self.out = self.fn()
        return self.out

    def retire(self):
        self.fn = self.out = None


class FakeState:
    """Stand-in for a model's GraphState on a CPU: no side stream, CallEachTime for the capture."""

    def __init__(self, warm: bool):
        self.warm = warm

    @contextmanager
    def side_stream(self, device):
        yield None

    def mark_warm(self):
        self.warm = True

    def capture(self, fn, what, model):
        return CallEachTime(fn)


def _fake_graphs(monkeypatch, warm: bool = False):
    """Graphs on a CPU: CallEachTime for the capture; `warm`: the side stream has run an eager step before, so
    every step is replayed (the first forward runs without gradient)."""
    CallEachTime.made = []
    monkeypatch.setattr(options_mod, "graphs_wanted", lambda setting, model, n: bool(setting))
    monkeypatch.setattr(runner_mod, "graph_state", lambda model: FakeState(warm))


def _opts(graphs: bool, suffix: bool | str = "auto") -> ExecOptions:
    return ExecOptions(suffix_replay=suffix, cuda_graphs=graphs)


def _close(got: torch.Tensor, want: torch.Tensor, warm: bool) -> None:
    """v* of graph steps against eager steps. Warm, the first gradient comes from the replayed step (suffix
    layout, KL against the first forward's distributions) instead of the first forward's backward: the same
    gradient but for float rounding, so the tolerance of the suffix-replay comparison applies."""
    rtol, atol = (1e-4, 1e-5) if warm else (1e-5, 1e-6)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * want.abs().max().item())


@pytest.mark.parametrize(("arch", "suffix", "warm"),
                         [("gpt2", True, False), ("gpt2", False, False), ("llama", True, False),
                          ("gpt2", True, True), ("gpt2", False, True), ("llama", True, True)])
def test_graph_steps_give_the_eager_v_star(arch, suffix, warm, monkeypatch):
    _fake_graphs(monkeypatch, warm)
    model, tok, adapter = setup_tiny(arch)
    out = {}
    for graphs in (False, True):
        hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=10, v_lr=0.05, kl_factor=0.5, v_weight_decay=0.1,
                                          early_stop_loss=0.0, preserve_prompts=["{} lives in"]))
        out[graphs] = optimise_values(model, tok, adapter, CASES, TEMPLATES, hp, "down_proj", 1, _opts(graphs, suffix))
    assert len(CallEachTime.made) == 1  # captured once: after the eager step, or before any step when warm
    a, b = out[False], out[True]
    assert a.steps == b.steps == [10, 10, 10]
    for la, lb in zip(a.losses, b.losses, strict=True):
        assert lb == pytest.approx(la, rel=1e-5, abs=1e-6)
    _close(b.v_star, a.v_star, warm)
    assert (b.v_star - b.v_init).norm() > 0.01 * b.v_init.norm()  # it moved


@pytest.mark.parametrize("warm", [False, True])
def test_finished_cases_stay_fixed_in_the_graph_batch_and_half_a_batch_recaptures(warm, monkeypatch):
    _fake_graphs(monkeypatch, warm)
    model, tok, adapter = setup_tiny("gpt2")
    out = {}
    for graphs in (False, True):  # on this tiny model two cases stall after the capture (plateau stop), one goes on
        hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=14, v_lr=0.5, early_stop_loss=0.0,
                                          plateau_patience=3, plateau_min_improvement=0.001))
        out[graphs] = optimise_values(model, tok, adapter, CASES, TEMPLATES[:2], hp, "down_proj", 1, _opts(graphs))
    a, b = out[False], out[True]
    assert a.steps == b.steps and len(set(a.steps)) > 1 and min(a.steps) > runner_mod.EAGER_STEPS, a.steps
    for la, lb in zip(a.losses, b.losses, strict=True):
        assert lb == pytest.approx(la, rel=1e-5, abs=1e-6)
    _close(b.v_star, a.v_star, warm)
    # 3 cases captured; once 2 have stopped (1 left, 2 * 1 <= 3) the last one is re-captured alone
    assert len(CallEachTime.made) == 2


@pytest.mark.parametrize("warm", [False, True])
def test_every_case_reaching_the_early_stop_in_graph_steps_keeps_its_delta(warm, monkeypatch):
    """In graph steps the Adam step is launched before the losses are read: a case that stops at that step gets
    its delta back, also when the last case stops and the loop ends early."""
    _fake_graphs(monkeypatch, warm)
    model, tok, adapter = setup_tiny("gpt2")
    base = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=16, v_lr=0.5, plateau_patience=3,
                                        plateau_min_improvement=0.001))
    first = optimise_values(model, tok, adapter, CASES, TEMPLATES[:2], base, "down_proj", 1, _opts(False, True))
    # on this tiny model two cases stall (plateau stop); the third, the last to stop, falls below the early stop
    # at step 7 of 16
    stop = (first.losses[0][6] + first.losses[0][7]) / 2
    out = {}
    for graphs in (False, True):
        hp = base.model_copy(update=dict(early_stop_loss=stop))
        out[graphs] = optimise_values(model, tok, adapter, CASES, TEMPLATES[:2], hp, "down_proj", 1, _opts(graphs, True))
    a, b = out[False], out[True]
    assert a.steps == b.steps and a.steps[0] == 8 == max(a.steps) and len(set(a.steps)) > 1, a.steps
    assert min(a.steps) > runner_mod.EAGER_STEPS
    _close(b.v_star, a.v_star, warm)


def test_graphs_auto_needs_a_model_on_one_cuda_device():
    model, _, _ = setup_tiny("gpt2")
    assert ExecOptions().cuda_graphs == "auto"
    assert not graphs_wanted("auto", model, 20) and not graphs_wanted(True, model, 20)
    assert not ExecOptions(cuda_graphs=True).plan(model, 20).graphs
    with pytest.raises(ValueError, match="cuda_graphs"):
        ExecOptions(cuda_graphs="maybe")


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
def test_real_cuda_graph_matches_eager_steps(arch, monkeypatch):
    import goldenlayers.editing.accel.graphs as graphs_mod

    made = []

    class Spy(graphs_mod.StepGraph):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(1)

    monkeypatch.setattr(graphs_mod, "StepGraph", Spy)
    model, tok, adapter = setup_tiny(arch)  # a new model: its first graphed optimisation starts with an eager step
    model.cuda()
    out = {}
    hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=10, v_lr=0.05, kl_factor=0.5, early_stop_loss=0.0))
    for graphs in (False, True):
        out[graphs] = optimise_values(model, tok, adapter, CASES, TEMPLATES, hp, "down_proj", 1, _opts(graphs, True))
    assert made == [1]  # captured (a failed capture falls back to eager steps silently but for a warning)
    assert graph_state(model).warm
    out["warm"] = optimise_values(model, tok, adapter, CASES, TEMPLATES, hp, "down_proj", 1,
                                  _opts(True, True))  # every step replayed
    assert made == [1, 1]
    a = out[False]
    for b in (out[True], out["warm"]):
        for la, lb in zip(a.losses, b.losses, strict=True):
            assert lb == pytest.approx(la, rel=1e-4, abs=1e-5)
        torch.testing.assert_close(b.v_star, a.v_star, rtol=1e-4, atol=1e-5 * a.v_star.abs().max().item())


@pytest.mark.gpu
def test_suffix_replay_auto_on_a_gpu_follows_the_dtype_and_the_graphs():
    from goldenlayers.editing.accel.suffix import suffix_wanted

    model, _, _ = setup_tiny("gpt2")
    model.cuda()
    assert suffix_wanted("auto", model, graphs=True) and suffix_wanted("auto", model, graphs=False)
    torch.set_float32_matmul_precision("high")  # TF32: worth it only when graphs remove the launch overhead
    try:
        assert suffix_wanted("auto", model, graphs=True) and not suffix_wanted("auto", model, graphs=False)
    finally:
        torch.set_float32_matmul_precision("highest")
    model.to(torch.bfloat16)
    assert suffix_wanted("auto", model, graphs=True) and not suffix_wanted("auto", model, graphs=False)
    assert not suffix_wanted(False, model, graphs=True)
