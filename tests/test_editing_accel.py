"""The execution options of the v* optimisation (editing.accel): chosen apart from the method settings, read from
GOLDENLAYERS_ACCEL, never changing the result; the CUDA-graph state kept by the model, not by the package."""

import copy
import pickle
import types

import pytest
import torch
from editing_helpers import setup_tiny
from test_editing_values import CASES, FAST

import goldenlayers.editing.accel as accel
from goldenlayers.editing import EditHParams, resolve_settings
from goldenlayers.editing.accel import ENV, ExecOptions
from goldenlayers.editing.accel.graphs import STATE_ATTR, GraphState, graph_state
from goldenlayers.editing.values import optimise_values


def test_options_are_read_from_the_environment():
    assert ExecOptions.from_env({}) == ExecOptions() == ExecOptions("auto", "auto", True)
    assert ExecOptions.from_env({ENV: " suffix=off, graphs=ON ,kernels=off"}) == ExecOptions(False, True, False)
    assert ExecOptions.from_env({ENV: "graphs=auto"}) == ExecOptions(cuda_graphs="auto")
    for bad in ("suffix", "suffix=maybe", "graph=off", "kernels=auto"):
        with pytest.raises(ValueError, match=f"{ENV}: cannot read"):
            ExecOptions.from_env({ENV: bad})


@pytest.mark.parametrize("key", ["suffix_replay", "cuda_graphs"])
def test_the_former_method_settings_are_refused_with_a_pointer_to_the_options(key):
    with pytest.raises(ValueError, match=f"{key} is no longer a method setting.*{ENV}="):
        resolve_settings(None, "rome", overrides={key: False})
    assert key not in EditHParams.model_fields


def test_every_option_gives_the_same_v_star_and_the_environment_is_read_per_optimisation(monkeypatch):
    model, tok, adapter = setup_tiny("gpt2")
    hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=6, v_lr=0.1, kl_factor=0.5, early_stop_loss=0.0))
    runs = {}
    for text in ("", "suffix=off", "kernels=off", "suffix=off,kernels=off"):
        monkeypatch.setenv(ENV, text)
        runs[text] = optimise_values(model, tok, adapter, CASES, ["{}", "Short. {}"], hp, "down_proj", 1)
    base = runs[""]
    for text, got in runs.items():
        torch.testing.assert_close(got.v_star, base.v_star, rtol=1e-4, atol=1e-5 * base.v_star.abs().max().item())
        assert got.steps == base.steps, text
    assert not torch.equal(runs["suffix=off"].v_star, base.v_star)  # another layout really ran (other rounding)
    monkeypatch.setenv(ENV, "suffix=sometimes")
    with pytest.raises(ValueError, match=ENV):
        optimise_values(model, tok, adapter, CASES[:1], ["{}"], hp, "down_proj", 1)


def test_graph_state_lives_on_the_model_and_copies_start_afresh():
    model, _, _ = setup_tiny("gpt2")
    other, _, _ = setup_tiny("gpt2")
    state = graph_state(model)
    assert graph_state(model) is state and graph_state(other) is not state
    state.warm = state.failed = True
    twin = copy.deepcopy(model)
    assert graph_state(twin) is not state and not graph_state(twin).warm
    assert not pickle.loads(pickle.dumps(state)).failed
    assert STATE_ATTR not in dict(model.named_modules()) and not any(STATE_ATTR in k for k in model.state_dict())
    assert not ExecOptions(cuda_graphs=True).plan(model, 20).graphs  # a failed capture is not tried again


def test_the_package_keeps_no_module_level_mutable_state():
    """No module of editing.accel holds a dict, list or set (constants are read-only mappings or tuples): the graph
    state of earlier versions was a module-level dict per device."""
    import goldenlayers.editing.accel.graphs
    import goldenlayers.editing.accel.kernels
    import goldenlayers.editing.accel.options
    import goldenlayers.editing.accel.replay
    import goldenlayers.editing.accel.runner
    import goldenlayers.editing.accel.suffix  # noqa: F401

    mods = [m for m in vars(accel).values() if isinstance(m, types.ModuleType)]
    assert {m.__name__.rsplit(".", 1)[1] for m in mods} >= {"graphs", "kernels", "options", "replay", "runner", "suffix"}
    for m in mods:
        for name, value in vars(m).items():
            if name not in ("__all__", "__path__", "__builtins__", "__annotations__"):
                assert not isinstance(value, (dict, list, set, GraphState)), (m.__name__, name)
