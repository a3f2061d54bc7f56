"""The v* optimisation, context templates and the batch methods on tiny models (docs/editing.md "v*")."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from editing_helpers import affine, random_spd, setup_tiny

from goldenlayers.cases import EditCase
from goldenlayers.editing import context_templates, edit, resolve_settings
from goldenlayers.editing.accel import ExecOptions
from goldenlayers.editing.keys import read_keys, template_weights
from goldenlayers.editing.values import optimise_values, optimise_values_layers
from goldenlayers.models.kv_cache import output_cache
from goldenlayers.models.tiny import tiny_model
from goldenlayers.text import encode_answers

FAST = dict(context_templates=[(4, 2)], v_num_grad_steps=4, v_weight_decay=0.0, clamp_norm_factor=100.0)
W2 = dict(FAST, mom2_update_weight=2.0)  # MEMIT's and EMMET's w
CASES = [
    EditCase(case_id="c0", dataset="t", subject="Tom Baker", prompt="The lawyer is Tom Baker", target_new="Paris"),
    EditCase(case_id="c1", dataset="t", subject="Anna Smith", prompt="Anna Smith plays the", target_new="violin"),
    EditCase(case_id="c2", dataset="t", subject="Lionel Messi", prompt="Lionel Messi was born in", target_new="France"),
]


def test_templates_are_seeded_cached_and_shaped():
    model, tok, _ = setup_tiny("gpt2")
    t1 = context_templates(model, tok, [(5, 3), (8, 2)], seed=4)
    assert len(t1) == 6 and t1[0] == "{}" and all(t.endswith(". {}") and t.count("{}") == 1 for t in t1[1:])
    other = tiny_model("gpt2", seed=1)  # same weights, another object: regenerated, equal by seeding
    assert context_templates(other, tok, [(5, 3), (8, 2)], seed=4) == t1
    assert context_templates(model, tok, [(5, 3), (8, 2)], seed=5) != t1
    assert context_templates(model, tok, []) == ["{}"]


@pytest.mark.parametrize(("arch", "site", "layer"),
                         [("gpt2", "down_proj", 1), ("gpt2", "block", 2), ("llama", "down_proj", 2), ("opt", "block", 1)])
def test_batched_v_star_equals_one_at_a_time(arch, site, layer):
    model, tok, adapter = setup_tiny(arch)
    hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=8, kl_factor=0.5, v_weight_decay=0.1,
                                      clamp_norm_factor=1.5))
    templates = context_templates(model, tok, hp.context_templates)
    together = optimise_values(model, tok, adapter, CASES, templates, hp, site, layer)
    for i, case in enumerate(CASES):
        alone = optimise_values(model, tok, adapter, [case], templates, hp, site, layer)
        assert alone.steps[0] == together.steps[i]
        torch.testing.assert_close(together.v_init[i], alone.v_init[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(together.v_star[i], alone.v_star[0], rtol=1e-4, atol=1e-5)
        assert together.losses[i] == pytest.approx(alone.losses[0], rel=1e-4, abs=1e-6)
        if site == "down_proj":  # keys read in the same first forward
            torch.testing.assert_close(together.k_star[i], alone.k_star[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("arch", "site", "layers", "suffix", "stop"),
                         [("gpt2", "down_proj", [0, 1, 3], False, 5.72), ("llama", "down_proj", [3, 1, 2], True, 5.68),
                          ("gpt2", "block", [1, 2], False, 5.72), ("opt", "down_proj", [0, 2], False, 5.75)])
def test_v_star_of_several_layers_in_one_batch_equals_layer_by_layer(arch, site, layers, suffix, stop):
    """Each (case, layer) pair is a case of its own whose delta enters at its own layer's site only: the v*, v_init,
    keys, losses and stopping steps are those of separate optimisations at each layer (float64, so rounding is far
    below the tolerance); the early stop is per pair (`stop` lies between the first losses of the cases, so some
    pairs stop at once and the others run every step)."""
    model, tok, adapter = setup_tiny(arch)
    model = model.double()
    hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=8, kl_factor=0.5, v_weight_decay=0.1,
                                      clamp_norm_factor=1.5, early_stop_loss=stop))
    templates = context_templates(model, tok, hp.context_templates)
    opts = ExecOptions(suffix_replay=suffix, cuda_graphs=False)
    grid = optimise_values_layers(model, tok, adapter, CASES, templates, hp, site, layers, opts)
    assert list(grid) == layers
    steps = set()
    for layer in layers:
        alone = optimise_values(model, tok, adapter, CASES, templates, hp, site, layer, opts)
        got = grid[layer]
        assert got.layer == layer and got.steps == alone.steps
        steps |= set(alone.steps)
        torch.testing.assert_close(got.v_init, alone.v_init, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(got.v_star, alone.v_star, rtol=1e-7, atol=1e-7)
        for a, b in zip(got.losses, alone.losses, strict=True):
            assert a == pytest.approx(b, rel=1e-7, abs=1e-9)
        if site == "down_proj":
            torch.testing.assert_close(got.k_star, alone.k_star, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(got.k_bare, alone.k_bare, rtol=1e-9, atol=1e-12)
    assert len(steps) > 1  # pairs stopped at different steps
    assert not torch.equal(grid[layers[0]].v_star, grid[layers[1]].v_star)
    with pytest.raises(ValueError, match="layers repeat"):
        optimise_values_layers(model, tok, adapter, CASES, templates, hp, site, [1, 1], opts)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_preservation_prompts_batch_exactly_and_enter_the_loss(arch):
    """Preservation rows (KL at their last token) keep batching exact, also when cases stop early and their rows
    leave the batch (the reference distributions are indexed per row), and leave k* alone."""
    model, tok, adapter = setup_tiny(arch)
    base = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=10, kl_factor=0.5))
    hp = base.model_copy(update={"preserve_prompts": ["{} is", "About {}:"], "preserve_factor": 2.0})
    templates = context_templates(model, tok, hp.context_templates)
    plain = optimise_values(model, tok, adapter, CASES, templates, base, "down_proj", 1)
    first = optimise_values(model, tok, adapter, CASES, templates, hp, "down_proj", 1)
    assert first.losses[0][0] == pytest.approx(plain.losses[0][0])  # KL is 0 at the start
    assert first.losses[0][1:] != pytest.approx(plain.losses[0][1:])
    torch.testing.assert_close(first.k_star, plain.k_star)
    ordered = sorted(first.losses[0])
    stop = (ordered[len(ordered) // 2] + ordered[len(ordered) // 2 + 1]) / 2  # between two steps: no float tie
    hp = hp.model_copy(update={"early_stop_loss": stop})
    together = optimise_values(model, tok, adapter, CASES, templates, hp, "down_proj", 1)
    for i, case in enumerate(CASES):
        alone = optimise_values(model, tok, adapter, [case], templates, hp, "down_proj", 1)
        assert alone.steps[0] == together.steps[i]
        torch.testing.assert_close(together.v_star[i], alone.v_star[0], rtol=1e-4, atol=1e-5)
        assert together.losses[i] == pytest.approx(alone.losses[0], rel=1e-4, abs=1e-6)
    assert min(together.steps) < max(together.steps)


def test_cases_that_stop_early_keep_their_v_star_while_others_go_on():
    model, tok, adapter = setup_tiny("gpt2")
    hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=10))
    templates = context_templates(model, tok, hp.context_templates)
    first = optimise_values(model, tok, adapter, CASES, templates, hp, "down_proj", 1)
    stop = sorted(first.losses[0])[len(first.losses[0]) // 2]  # a threshold case 0 reaches half-way
    hp_stop = hp.model_copy(update={"early_stop_loss": stop})
    mixed = optimise_values(model, tok, adapter, CASES, templates, hp_stop, "down_proj", 1)
    assert min(mixed.steps) < max(mixed.steps)
    for i, case in enumerate(CASES):
        alone = optimise_values(model, tok, adapter, [case], templates, hp_stop, "down_proj", 1)
        assert alone.steps[0] == mixed.steps[i]
        torch.testing.assert_close(mixed.v_star[i], alone.v_star[0], rtol=1e-4, atol=1e-5)


def test_plateau_stop_ends_a_stalled_case_after_its_patience():
    model, tok, adapter = setup_tiny("gpt2")
    # clamp 1e-9: delta cannot move, so every loss stays at its first value and only the plateau rule can stop
    hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=12, clamp_norm_factor=1e-9, v_weight_decay=0.0))
    templates = context_templates(model, tok, hp.context_templates)
    off = optimise_values(model, tok, adapter, CASES[:2], templates, hp, "down_proj", 1)
    assert off.steps == [12, 12]
    on = optimise_values(model, tok, adapter, CASES[:2], templates, hp.model_copy(update={"plateau_patience": 3}),
                         "down_proj", 1)
    assert on.steps == [4, 4]  # best at step 0, stalled at step 3: four forwards
    torch.testing.assert_close(on.v_star, off.v_star, rtol=1e-5, atol=1e-6)
    # a case that keeps improving by more than plateau_min_improvement is never stopped by the rule
    moving = optimise_values(model, tok, adapter, CASES[:1], templates,
                             resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=6, plateau_patience=1,
                                                          plateau_min_improvement=0.0, v_lr=0.05)),
                             "down_proj", 1)
    assert all(b < a for a, b in zip(moving.losses[0], moving.losses[0][1:]))
    assert moving.steps[0] == 6


def test_first_loss_is_the_mean_target_nll_over_templates():
    model, tok, adapter = setup_tiny("llama")
    hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=1))
    templates = context_templates(model, tok, hp.context_templates)
    res = optimise_values(model, tok, adapter, CASES[:2], templates, hp, "down_proj", 2)
    for i, case in enumerate(CASES[:2]):
        nll = []
        for t in templates:  # independent: one plain forward per template, no hooks, no batching
            b = encode_answers(tok, [t.replace("{}", case.prompt)], [case.target_new])
            with torch.no_grad():
                logp = model(input_ids=b.input_ids).logits.log_softmax(-1)[0]
            ids = b.input_ids[0]
            pos = b.predict_mask[0].nonzero()[:, 0]
            nll.append(-logp[pos, ids[pos + 1]].mean().item())
        assert res.losses[i] == [pytest.approx(sum(nll) / len(nll), rel=1e-5)]


def test_v_star_edit_raises_the_target_probability():
    model, tok, _ = setup_tiny("gpt2", seed=0)
    with torch.no_grad():  # sharpen the random model's output so that one vector can move its argmax
        model.get_output_embeddings().weight.mul_(30)
    case = CASES[0]
    b = encode_answers(tok, [case.prompt], [case.target_new])
    pos = b.predict_mask[0].nonzero()[:, 0]

    def p_target():
        with torch.no_grad():
            probs = model(input_ids=b.input_ids).logits.softmax(-1)[0]
        return probs[pos, b.input_ids[0, pos + 1]].prod().item()

    before = p_target()
    res = edit(model, tok, case, method="r-rome", layer=1,
               hparams=dict(FAST, v_num_grad_steps=30, kl_factor=0.0, clamp_norm_factor=1000.0))
    after = p_target()
    losses = res.diagnostics[0].losses
    assert before < 1e-6 and after > 0.5, (before, after)
    assert losses[-1] < 0.1 * losses[0] and res.diagnostics[0].steps < 30  # stopped early at loss < 0.05
    res.restore()
    assert p_target() == before
@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma2"])
def test_memit_and_emmet_edits_solve_their_equations_on_a_model(arch):
    model, tok, adapter = setup_tiny(arch)
    C = {lay: random_spd(adapter.d_ff(model), seed=lay) for lay in (1, 2)}
    hp = resolve_settings(None, "memit", overrides=W2)
    templates = context_templates(model, tok, hp.context_templates)
    weights = template_weights(hp.context_templates, hp.key_averaging)  # the preset's (MEMIT's grouped) k*
    keys = read_keys(model, tok, adapter, CASES, templates, [1], block_out_layer=2, weights=weights)
    K = keys.k_star[1]
    res = edit(model, tok, CASES, method="memit", layers=[1, 2], hparams=W2, stats=C)
    R = (torch.stack([d.v_star for d in res.diagnostics]).double() - keys.block_out) / 2  # half the residual at layer 1
    dw = res.delta.change(1)
    torch.testing.assert_close(dw @ (2.0 * C[1] + K.T @ K), R.T @ K, rtol=1e-6, atol=1e-8)
    assert res.delta.change(2).norm() > 0
    res.restore()
    keys = read_keys(model, tok, adapter, CASES[:2], templates, [2], block_out_layer=2, weights=weights)
    res = edit(model, tok, CASES[:2], method="emmet", layers=[2], hparams=dict(W2, emmet_lambda=0.0), stats=C)
    W1, b = affine(adapter, model, 2)
    W0 = W1 - res.delta.change(2)
    z = torch.stack([d.v_star for d in res.diagnostics]).double()
    # equality constraints: each edited key now maps to its old value plus its residual z* - z
    torch.testing.assert_close((W1 - W0) @ keys.k_star[2].T, (z - keys.block_out).T, rtol=1e-6, atol=1e-7)
    res.restore()


SUFFIX_ARCHS = ["gpt2", "gptj", "gpt_neox", "opt", "llama", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3"]


@pytest.mark.parametrize("arch", SUFFIX_ARCHS)
def test_suffix_replay_gives_the_full_rows_v_star(arch, monkeypatch):
    """Steps after the first compute only the positions from the fact token on (editing.accel.suffix): same losses and
    v* as running the whole rows, at the MLP site and the residual site, with a case leaving the batch early and
    a preservation row; architectures with sliding-window caches (gemma2, gemma3) keep the full rows."""
    import goldenlayers.editing.accel.runner as runner_mod

    built = []

    class Spy(runner_mod.SuffixRows):
        def __init__(self, rows, *a):
            super().__init__(rows, *a)
            built.append((rows.input_ids.shape[1], self.rows.input_ids.shape[1]))

    monkeypatch.setattr(runner_mod, "SuffixRows", Spy)
    model, tok, adapter = setup_tiny(arch)
    templates = ["{}", "A long sentence of context here. {}", "Short. {}"]
    for site, layer in (("down_proj", 1), ("block", 2)):
        out = {}
        for suffix in (False, True):
            hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=8, v_lr=0.05,
                                              preserve_prompts=["{} lives in"], early_stop_loss=0.0))
            built.clear()
            out[suffix] = optimise_values(model, tok, adapter, CASES, templates, hp, site, layer,
                                          ExecOptions(suffix_replay=suffix))
            assert bool(built) == (suffix and arch not in ("gemma2", "gemma3")), built
            if built:
                full, short = built[0]
                assert short < full  # fewer positions per step
        a, b = out[False], out[True]
        assert a.steps == b.steps
        for la, lb in zip(a.losses, b.losses, strict=True):
            assert lb == pytest.approx(la, rel=1e-5, abs=1e-5)
        torch.testing.assert_close(b.v_star, a.v_star, rtol=1e-4, atol=1e-5 * a.v_star.abs().max().item())
        torch.testing.assert_close(b.v_init, a.v_init, rtol=0, atol=0)


def test_suffix_rows_end_at_the_last_position_the_loss_reads():
    """A templated row's suffix runs from the fact token to the token before the target's last one; a KL row's is
    the fact token alone; a preservation row's runs to its last token."""
    from goldenlayers.editing.accel.suffix import SuffixRows
    from goldenlayers.editing.batch import KL_ROW, PRESERVE_ROW, build_rows

    model, tok, _ = setup_tiny("gpt2")
    case = EditCase(case_id="c", dataset="t", subject="Anna Smith", prompt="Anna Smith plays the",
                    target_new="violin concerto")
    rows = build_rows(tok, [case], ["{}", "Short. {}"], with_target=True, kl_prompt="{} is a",
                      preserve_prompts=["{} lives in"])
    with torch.no_grad():
        out = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask, use_cache=True)
    sr = SuffixRows(rows, output_cache(out), tok.pad_token_id)
    lengths = sr.rows.attention_mask.sum(1)
    n_target = len(tok(" violin concerto")["input_ids"])
    for i, kind in enumerate(rows.template.tolist()):
        end = int(rows.attention_mask[i].sum())  # the row's length
        fact = int(rows.fact[i])
        want = {KL_ROW: 1, PRESERVE_ROW: end - fact}.get(kind, end - 1 - fact)
        assert int(lengths[i]) == want, (kind, int(lengths[i]), want)
        if kind >= 0:  # every prediction of the target is kept, the last target token (predicts nothing) is not
            assert int(sr.rows.predict_mask[i].sum()) == int(rows.predict_mask[i].sum()) == n_target
    assert sr.rows.input_ids.shape[1] == int(lengths.max())


def test_suffix_replay_with_a_case_stopping_early():
    """A case that reaches the early stop leaves the batch; the others go on in the suffix layout."""
    model, tok, adapter = setup_tiny("gpt2")
    out = {}
    for suffix in (False, True):
        hp = resolve_settings(None, "rome", None, dict(FAST, v_num_grad_steps=12, v_lr=0.5))
        opts = ExecOptions(suffix_replay=suffix)
        first = optimise_values(model, tok, adapter, CASES, ["{}", "Short. {}"], hp, "down_proj", 1, opts)
        stop = sorted(min(x) for x in first.losses)[1]  # between the cases' best losses: some stop, some not
        hp = hp.model_copy(update=dict(early_stop_loss=stop))
        out[suffix] = optimise_values(model, tok, adapter, CASES, ["{}", "Short. {}"], hp, "down_proj", 1, opts)
    a, b = out[False], out[True]
    assert a.steps == b.steps and len(set(a.steps)) > 1, a.steps  # cases left the batch at different steps
    torch.testing.assert_close(b.v_star, a.v_star, rtol=1e-4, atol=1e-5 * a.v_star.abs().max().item())


def test_suffix_replay_auto_is_on_where_matrix_work_dominates():
    from goldenlayers.editing.accel.suffix import suffix_wanted

    model, _, _ = setup_tiny("gpt2")
    assert ExecOptions().suffix_replay == "auto"
    assert suffix_wanted("auto", model) and suffix_wanted(True, model) and not suffix_wanted(False, model)
    assert ExecOptions().plan(model, 20).suffix and not ExecOptions().plan(model, 1).suffix  # one forward: no use
    with pytest.raises(ValueError, match="suffix_replay"):
        ExecOptions(suffix_replay="sometimes")
