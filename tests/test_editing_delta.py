"""Reversibility (bitwise restore, LIFO stacking) and bad inputs that must leave the model untouched."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from goldenlayers.cases import CaseError, EditCase
from goldenlayers.editing import (
    EditHParams,
    EditOrderError,
    StatsError,
    WeightDelta,
    active_deltas,
    edit,
    edit_each,
    get_method,
    preset_for_model,
    resolve_settings,
)
from goldenlayers.models.adapters import get_adapter
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer

FAST = dict(context_templates=[(3, 1)], v_num_grad_steps=3, v_weight_decay=0.0, clamp_norm_factor=100.0)
A = EditCase(case_id="a", dataset="t", subject="Tom Baker", prompt="Tom Baker works for", target_new="Paris")
B = EditCase(case_id="b", dataset="t", subject="Anna Smith", prompt="Anna Smith plays the", target_new="soccer")


@pytest.fixture(scope="module")
def gpt2():
    return tiny_model("gpt2", seed=2), tiny_tokenizer()


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model, snap) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


def test_restore_is_bitwise_and_sequential_edits_undo_in_lifo_order(gpt2):
    model, tok = gpt2
    s0 = _snapshot(model)
    ra = edit(model, tok, A, method="rome", layer=1, hparams=FAST)
    s1 = _snapshot(model)
    assert not _same(model, s0)
    rb = edit(model, tok, B, method="r-rome", layer=1, hparams=FAST)
    adapter = get_adapter(model)
    # the second edit stacks on the first: W2 = W1 + dW_b (up to float32 rounding), W1 = W0 + dW_a
    W = adapter.weight(model, 1).double()
    torch.testing.assert_close(W, s0["transformer.h.1.mlp.c_proj.weight"].T.double() + ra.delta.change(1)
                               + rb.delta.change(1), rtol=0, atol=1e-6)
    assert active_deltas(model) == [ra.delta, rb.delta]
    with pytest.raises(EditOrderError, match="later edits first"):
        ra.restore()
    rb.restore()
    assert _same(model, s1)
    ra.restore()
    assert _same(model, s0) and active_deltas(model) == []
    with pytest.raises(EditOrderError, match="already restored"):
        ra.restore()
    with pytest.raises(EditOrderError):
        ra.delta.apply(1, torch.zeros(32, 64, dtype=torch.float64))


def test_sequential_mode_edits_in_turn_and_restores_exactly(gpt2):
    model, tok = gpt2
    s0 = _snapshot(model)
    with pytest.raises(ValueError, match="sequential=True"):
        edit(model, tok, [A, B], method="r-rome", layer=2, hparams=FAST)
    assert _same(model, s0)
    res = edit(model, tok, [A, B], method="r-rome", layer=2, hparams=FAST, sequential=True)
    assert [d.case_id for d in res.diagnostics] == ["a", "b"]
    assert torch.linalg.matrix_rank(res.delta.change(2)).item() == 2  # two rank-one updates accumulated
    res.restore()
    assert _same(model, s0)


def test_edit_each_yields_applied_edits_and_demands_restores(gpt2):
    model, tok = gpt2
    s0 = _snapshot(model)
    gen = edit_each(model, tok, [A, B], method="r-rome", layer=1, hparams=FAST)
    first = next(gen)
    assert not first.restored and first.delta.change(1).norm() > 0
    first.restore()
    second = next(gen)
    assert second.diagnostics[0].case_id == "b"
    with pytest.raises(EditOrderError, match="restore the edit"):
        next(gen)
    second.restore()
    assert _same(model, s0)


def _bad_calls(model, tok):
    d_ff = 64
    nan_c = torch.eye(d_ff, dtype=torch.float64)
    nan_c[3, 3] = float("nan")
    k = torch.randn(d_ff, 2, dtype=torch.float64)
    return [
        (CaseError, "target_new", lambda: edit(model, tok, dict(case_id="x", dataset="t", subject="Tom", prompt="Tom is",
                                                                 target_new=" "), layer=1, hparams=FAST)),
        (CaseError, "target_new", lambda: edit(model, tok, EditCase.model_construct(
            case_id="y", dataset="t", subject="Tom", prompt="Tom is", target_new="", rephrase=[], locality=[],
            portability=[]), layer=1, hparams=FAST)),
        (CaseError, "subject", lambda: edit(model, tok, EditCase.model_construct(
            case_id="z", dataset="t", subject="Anna", prompt="Tom is", target_new="x", rephrase=[], locality=[],
            portability=[]), layer=1, hparams=FAST)),
        (CaseError, "'prompt'", lambda: edit(model, tok, EditCase(case_id="long", dataset="t", subject="Tom",
                                                                  prompt="Tom " + "and so on " * 60, target_new="x"),
                                             layer=1, hparams=FAST)),
        (StatsError, "NaN", lambda: edit(model, tok, A, layer=1, hparams=FAST, stats={1: nan_c})),
        (StatsError, "singular", lambda: edit(model, tok, A, layer=1, hparams=FAST, stats={1: k @ k.T})),
        (StatsError, "shape", lambda: edit(model, tok, A, layer=1, hparams=FAST, stats={1: torch.eye(5)})),
        (KeyError, "no key statistics", lambda: edit(model, tok, A, layer=1, hparams=FAST, stats={2: torch.eye(d_ff)})),
        (IndexError, "0..3", lambda: edit(model, tok, A, layer=4, hparams=FAST)),
        (IndexError, "0..3", lambda: edit(model, tok, A, method="memit", layers=[2, 7], hparams=FAST)),
        (ValueError, "mom2_adjustment", lambda: edit(model, tok, A, method="memit", layer=1,
                                                     hparams=dict(FAST, mom2_adjustment=True))),
        (KeyError, "did you mean 'r-rome'", lambda: edit(model, tok, A, method="r-rom", layer=1)),
        (ValueError, "exactly one layer", lambda: edit(model, tok, A, method="rome", layers=[1, 2], hparams=FAST)),
        (ValueError, "no layer given", lambda: edit(model, tok, A, method="rome", hparams=FAST)),
    ]


def test_bad_inputs_raise_clear_errors_and_leave_weights_bitwise_unchanged(gpt2):
    model, tok = gpt2
    s0 = _snapshot(model)
    for exc, text, call in _bad_calls(model, tok):
        with pytest.raises(exc, match=text):
            call()
        assert _same(model, s0), f"weights changed by a failing call ({text})"
    assert active_deltas(model) == []


def test_failure_half_way_undoes_the_applied_layers(gpt2, monkeypatch):
    model, tok = gpt2
    s0 = _snapshot(model)
    import goldenlayers.editing.memit as memit_mod

    calls = []

    def failing_update(K, R, cov, w):  # first layer succeeds, the second one blows up
        calls.append(1)
        if len(calls) == 2:
            return torch.full((R.shape[1], K.shape[1]), float("nan"), dtype=torch.float64)
        return R.T.double() @ K.double() * 1e-3

    monkeypatch.setattr(memit_mod, "memit_update", failing_update)
    with pytest.raises(FloatingPointError, match="not finite"):
        edit(model, tok, [A, B], method="memit", layers=[1, 2], hparams=dict(FAST, mom2_update_weight=1.0))
    assert len(calls) == 2 and _same(model, s0) and active_deltas(model) == []


def test_settings_presets_and_validation():
    hp = resolve_settings(None, "rome", name="gpt2-xl")
    assert (hp.layers, hp.v_num_grad_steps, hp.v_lr, hp.v_weight_decay, hp.clamp_norm_factor, hp.kl_factor) == (
        [17], 20, 0.5, 0.5, 4.0, 0.0625)
    assert sum(c for _, c in hp.context_templates) == 20
    memit = resolve_settings(None, "memit", name="gpt2-xl")
    assert (memit.layers, memit.clamp_norm_factor, memit.mom2_update_weight) == ([13, 14, 15, 16, 17], 0.75, 20000.0)
    llama = resolve_settings(None, "emmet", overrides={"emmet_lambda": 0.2}, name="meta-llama/Llama-2-7b-hf")
    assert (llama.layers, llama.v_num_grad_steps, llama.mom2_update_weight, llama.emmet_lambda) == (
        [4, 5, 6, 7, 8], 25, 1.0, 0.2)
    small = resolve_settings(None, "rome", name="default-gpt2")
    assert (small.context_templates, small.kl_factor, small.v_weight_decay, small.v_num_grad_steps, small.v_lr,
            small.clamp_norm_factor, small.early_stop_loss, small.preserve_prompts, small.plateau_patience) == (
        [], 1.0, 1e-3, 500, 0.3, 50.0, 0.5, [], 100)
    assert hp.plateau_patience is None and llama.plateau_patience is None  # the reference loops have no such stop
    assert preset_for_model(name="google/gemma-3-12b-it") == "gemma-3-12b"
    assert preset_for_model(name="my/model") == "generic"
    with pytest.raises(ValueError, match="Extra inputs"):
        resolve_settings(None, "rome", overrides={"v_lr_typo": 1.0})
    with pytest.raises(ValueError, match="exactly once"):
        EditHParams(kl_prompt="is a")
    with pytest.raises(ValueError, match="preserve_prompts must each contain"):
        EditHParams(preserve_prompts=["{} is", "no subject here"])
    with pytest.raises(ValueError, match="plateau_patience"):
        EditHParams(plateau_patience=0)
    with pytest.raises(ValueError, match="plateau_min_improvement"):
        EditHParams(plateau_min_improvement=1.0)
    with pytest.raises(ValueError, match="ascending"):
        EditHParams(layers=[3, 2])
    with pytest.raises(ValueError, match="mom2_shrinkage"):
        EditHParams(mom2_shrinkage=-0.5)
    quality = resolve_settings(None, "rome", "default-llama-quality")
    assert (quality.mom2_adjustment, quality.mom2_shrinkage, quality.v_num_grad_steps, quality.plateau_patience,
            quality.preserve_prompts) == (True, 1.0, 1000, 500, [])
    assert len(resolve_settings(None, "rome", "default-gpt2-quality").preserve_prompts) == 8
    with pytest.raises(KeyError, match="preset 'default-gpt2-quality' has no settings for memit"):
        resolve_settings(None, "memit", "default-gpt2-quality")
    assert get_method("R_ROME").name == "r-rome" and isinstance(WeightDelta, type)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_deltas_are_keyed_by_layer_and_site_and_restore_bitwise(arch):
    """The adapter declares the sites ("mlp_out", "attn_out"); a delta on both sites of a layer changes each weight
    by its own dW in (d_out, d_in) orientation (GPT-2's Conv1D stores it transposed) and restores both bitwise."""
    from goldenlayers.models.adapters import ATTN_OUT, MLP_OUT

    model = tiny_model(arch, seed=3)
    adapter = get_adapter(model)
    assert adapter.sites == (MLP_OUT, ATTN_OUT)
    before = {s: adapter.site_param(model, 1, s).detach().clone() for s in adapter.sites}
    W_attn = adapter.site_weight(model, 1, ATTN_OUT).detach().double().clone()
    g = torch.Generator().manual_seed(0)
    d_attn = torch.randn(*W_attn.shape, generator=g, dtype=torch.float64) * 1e-2
    delta = WeightDelta(model, adapter, label="sites")
    delta.apply(1, d_attn, site=ATTN_OUT)
    delta.apply(1, torch.ones(*adapter.weight(model, 1).shape, dtype=torch.float64) * 1e-3)
    assert delta.keys == [(1, ATTN_OUT), (1, MLP_OUT)] and delta.layers == [1]
    torch.testing.assert_close(adapter.site_weight(model, 1, ATTN_OUT).double(), W_attn + d_attn, rtol=0, atol=1e-6)
    assert delta.norm(1, ATTN_OUT) == pytest.approx(float(d_attn.norm())) and delta.norm() > delta.norm(1, ATTN_OUT)
    with pytest.raises(ValueError, match=r"layer 1 \(attn_out\) has shape"):
        delta.apply(1, d_attn[:, 1:], site=ATTN_OUT)
    with pytest.raises(KeyError, match="no edit site 'mlp_in'"):
        delta.apply(1, d_attn, site="mlp_in")
    delta.restore()
    assert all(torch.equal(adapter.site_param(model, 1, s), before[s]) for s in adapter.sites)


def test_presets_are_chosen_by_rule_or_exact_name_and_settings_are_per_method(caplog):
    """The paper's models by their exact shape, small real models by architecture and size, the embedded defaults
    and hub names by exact name (logged as such); no substring match. Each method gets its own settings class."""
    import logging
    from types import SimpleNamespace

    from goldenlayers.editing.alphaedit import AlphaEditSettings
    from goldenlayers.editing.hparams import (
        EmmetSettings,
        MemitSettings,
        RomeSettings,
        preset_choice,
        resolve_settings,
    )

    def fake(model_type, d, layers, ff):
        return SimpleNamespace(config=SimpleNamespace(model_type=model_type, hidden_size=d, num_hidden_layers=layers,
                                                      intermediate_size=ff, _name_or_path="/models/x"))

    choice = preset_choice(fake("llama", 4096, 32, 11008))
    assert choice.preset == "llama-2-7b" and "shape" in choice.reason
    assert preset_choice(fake("llama", 4096, 32, 14336)).preset == "generic"  # Llama-3-8B's shape is not LLaMA-2's
    assert preset_choice(fake("llama", 576, 30, 1536)).preset == "llama-small"
    assert preset_for_model(name="my-gpt2-xl-finetune") == "generic"  # no substring match
    assert preset_for_model(name="/models/gpt2-xl") == "gpt2-xl"  # a path's last part, exactly
    with caplog.at_level(logging.INFO, logger="goldenlayers.editing"):
        small = resolve_settings(None, "rome", overrides={"v_lr": 0.2}, name="default-gpt2")
    assert "editing preset default-small: by name: 'default-gpt2' is listed for it" in caplog.text
    assert type(small) is RomeSettings and small.v_lr == 0.2 and not hasattr(small, "mom2_update_weight")
    with pytest.raises(ValueError, match="mom2_update_weight"):
        resolve_settings(None, "r-rome", "generic", {"mom2_update_weight": 1.0})
    assert type(resolve_settings(None, "memit", "generic")) is MemitSettings
    emmet = resolve_settings(None, "emmet", "gpt2-xl", {"emmet_lambda": 0.3})
    assert type(emmet) is EmmetSettings and (emmet.mom2_update_weight, emmet.emmet_lambda) == (1000.0, 0.3)
    alpha = resolve_settings(None, "alphaedit", "gpt2-xl")  # MEMIT's preset entry, without MEMIT's w
    assert type(alpha) is AlphaEditSettings and alpha.layers == [13, 14, 15, 16, 17] and alpha.mom2_adjustment
    assert resolve_settings(None, "rome", "generic", small) is small  # typed settings pass through once resolved
