"""ROME / R-ROME / EMMET / MEMIT updates checked against their defining equations (docs/equations.md "Editing methods"),
on tiny random models of every covered architecture."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from editing_helpers import affine, random_spd, setup_tiny

from goldenlayers.cases import EditCase
from goldenlayers.editing import KeyCov, context_templates, edit, resolve_settings
from goldenlayers.editing.emmet import ridge_for
from goldenlayers.editing.keys import read_keys
from goldenlayers.editing.solve import emmet_update, memit_update, rank_one_update
from goldenlayers.models.tiny import TINY_ARCHITECTURES

FAST = dict(context_templates=[(4, 2)], v_num_grad_steps=4, v_weight_decay=0.0, clamp_norm_factor=100.0)
CASE = EditCase(case_id="c0", dataset="t", subject="Tom Baker", prompt="The lawyer is Tom Baker", target_new="Paris")


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_rome_and_r_rome_map_their_key_to_v_star(arch):
    """W' k = v* (ROME: the bare key, R-ROME: k*), keys C^-1-orthogonal to k* unchanged; where the model normalises
    the MLP output (Gemma 2/3) v* is moved along its ray to the point nearest to W k + b (editing.rome.site_value)."""
    model, tok, adapter = setup_tiny(arch)
    layer, C = 1, random_spd(adapter.d_ff(model), seed=3)
    original = adapter.weight_param(model, layer).detach().clone()
    hp = resolve_settings(None, "rome", overrides=FAST)
    keys = read_keys(model, tok, adapter, [CASE], context_templates(model, tok, hp.context_templates), [layer])
    k, k_star = keys.k_bare[layer][0], keys.k_star[layer][0]
    assert (k - k_star).norm() > 1e-3  # templates make k* differ from k: the two methods are told apart
    u = torch.linalg.solve(C, k_star)
    x = torch.randn(k.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_perp = x - (x @ u) / (k_star @ u) * k_star  # x_perp^T C^-1 k* = 0
    W0, b = affine(adapter, model, layer)
    for method, key in (("rome", k), ("r-rome", k_star)):
        res = edit(model, tok, CASE, method=method, layer=layer, hparams=FAST, stats={layer: C})
        W1, _ = affine(adapter, model, layer)
        v_star = res.diagnostics[0].v_star.double()
        assert res.diagnostics[0].delta_norm > 1e-3
        if adapter.mlp_output_normalised:  # Gemma 2/3: the point of v*'s ray nearest to the value replaced
            current = W0 @ key + b
            scale = max(float(v_star @ current / (v_star @ v_star)), 0.25 * float(current.norm() / v_star.norm()))
            assert abs(scale - 1) > 1e-3  # v* is moved
            assert (scale * v_star - current).norm() < (v_star - current).norm()  # less change, same direction
            v_star = scale * v_star
        torch.testing.assert_close(W1 @ key + b, v_star, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(W1 @ x_perp, W0 @ x_perp, rtol=1e-4, atol=1e-5)
        if method == "rome":  # the published k/k* mix maps k, not k*
            assert (W1 @ k_star + b - v_star).norm() > 1e-4
        res.restore()
        assert torch.equal(adapter.weight_param(model, layer), original)


def test_mom2_shrinkage_uses_c_plus_a_mean_diag_identity():
    """mom2_shrinkage = a edits with C + a * mean(diag C) * I: the same update as passing that matrix, keys
    orthogonal to k* under its inverse unchanged, and a very large a gives C = I's update."""
    model, tok, adapter = setup_tiny("gpt2")
    layer, C = 1, random_spd(adapter.d_ff(model), seed=3)
    a = 0.7
    C_a = C + a * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype)
    K = torch.randn(3, C.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(KeyCov.from_matrix(C, layer, C.shape[0], shrinkage=a).solve(K),
                               torch.linalg.solve(C_a, K.T), rtol=1e-10, atol=1e-12)
    W0, _ = affine(adapter, model, layer)
    deltas = {}
    for label, stats, extra in (("shrunk", C, dict(mom2_shrinkage=a)), ("explicit", C_a, {}),
                                ("identity", None, {}), ("huge", C, dict(mom2_shrinkage=1e6))):
        res = edit(model, tok, CASE, method="r-rome", layer=layer, hparams=dict(FAST, **extra),
                   stats=None if stats is None else {layer: stats})
        deltas[label] = affine(adapter, model, layer)[0] - W0
        res.restore()
    torch.testing.assert_close(deltas["shrunk"], deltas["explicit"], rtol=1e-5, atol=1e-7)
    assert (deltas["shrunk"] - deltas["identity"]).norm() > 1e-3 * deltas["identity"].norm()
    torch.testing.assert_close(deltas["huge"], deltas["identity"], rtol=1e-3, atol=1e-4 * deltas["identity"].abs().max())


def test_emmet_single_case_without_ridge_is_r_rome_closed_form():
    g = torch.Generator().manual_seed(5)
    d_ff, d = 12, 6
    C, W = random_spd(d_ff, 7), torch.randn(d, d_ff, dtype=torch.float64, generator=g)
    k_star, resid = torch.randn(d_ff, dtype=torch.float64, generator=g), torch.randn(d, dtype=torch.float64, generator=g)
    cov = KeyCov.from_matrix(C, 0, d_ff)
    out = W @ k_star
    for w in (1.0, 1000.0):
        e = emmet_update(k_star[None], resid[None], cov, weight=w, ridge=0.0)
        r = rank_one_update(out, out + resid, k_star, k_star, cov)
        torch.testing.assert_close(e, r, rtol=1e-10, atol=1e-12)
        u = torch.linalg.solve(C, k_star)  # independent: R u^T / (k*^T u)
        torch.testing.assert_close(e, torch.outer(resid, u) / (k_star @ u), rtol=1e-10, atol=1e-12)
    with_ridge = emmet_update(k_star[None], resid[None], cov, weight=1000.0, ridge=0.1)
    assert not torch.allclose(with_ridge, r)
    hp = resolve_settings(None, "emmet", overrides={})
    assert ridge_for(hp, 1) == 0.0 and ridge_for(hp, 2) == 0.1
    assert ridge_for(resolve_settings(None, "emmet", overrides={"emmet_ridge": "always"}), 1) == 0.1


def test_memit_solve_satisfies_normal_equations():
    g = torch.Generator().manual_seed(2)
    d_ff, d, n, w = 10, 5, 3, 7.0
    C = random_spd(d_ff, 4)
    K, R = torch.randn(n, d_ff, dtype=torch.float64, generator=g), torch.randn(n, d, dtype=torch.float64, generator=g)
    for cov, Cm in ((KeyCov.from_matrix(C, 0, d_ff), C), (KeyCov.identity(d_ff), torch.eye(d_ff, dtype=torch.float64))):
        dw = memit_update(K, R, cov, w)
        torch.testing.assert_close(dw @ (w * Cm + K.T @ K), R.T @ K, rtol=1e-9, atol=1e-10)
