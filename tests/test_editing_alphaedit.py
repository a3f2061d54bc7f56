"""AlphaEdit (goldenlayers.editing.alphaedit; docs/editing.md "AlphaEdit"): the closed form against a ridge
regression solved independently in a basis of the null space, the preserved keys' outputs unchanged on a model,
the target reached, sequential state and bitwise restore."""

import numpy as np
import pytest
import torch
from editing_helpers import setup_tiny

from goldenlayers.cases import EditCase
from goldenlayers.editing import edit
from goldenlayers.editing.alphaedit import AlphaEditState, alphaedit_update, null_space_projection
from goldenlayers.editing.keys import read_keys
from goldenlayers.editing.stats import collect_key_stats

FAST = dict(context_templates=[], v_num_grad_steps=6, v_weight_decay=0.0, clamp_norm_factor=100.0, kl_factor=0.0,
            alphaedit_ridge=1e-6)
A = EditCase(case_id="a", dataset="t", subject="Tom Baker", prompt="Tom Baker works for", target_new="Paris")
B = EditCase(case_id="b", dataset="t", subject="Anna Smith", prompt="Anna Smith plays the", target_new="soccer")
TEXTS = ["The capital of France is Paris.", "Maria Lopez was born in Rome.", "The river runs to the sea."]


def test_closed_form_is_the_ridge_regression_inside_the_null_space():
    """dW = R^T K (P (K^T K + S) + a I)^-1 P equals min ||Y K^T - R^T||^2 + a ||Y||^2 + ||Y Kp^T||^2 over Y = Z B^T
    (B an orthonormal basis of the null space), solved here in numpy in B's coordinates; dW kills C's large
    eigenvectors."""
    rng = np.random.default_rng(0)
    d, m, n, d_out = 10, 4, 2, 5
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.r_[np.linspace(5.0, 1.0, d - m), np.full(m, 1e-4)]
    C = (Q * eig) @ Q.T
    K, R, Kp = rng.standard_normal((n, d)), rng.standard_normal((n, d_out)), rng.standard_normal((3, d))
    a, S = 0.3, Kp.T @ Kp
    P = null_space_projection(torch.tensor(C), threshold=1e-2)
    dw = alphaedit_update(torch.tensor(K), torch.tensor(R), P, a, torch.tensor(S)).numpy()
    Bn = Q[:, d - m:]  # the eigenvectors below the threshold
    X = K @ Bn  # (n, m): the keys in the null basis
    Z = R.T @ X @ np.linalg.inv(X.T @ X + Bn.T @ S @ Bn + a * np.eye(m))
    np.testing.assert_allclose(dw, Z @ Bn.T, rtol=1e-9, atol=1e-12)
    assert np.abs(dw @ Q[:, : d - m]).max() < 1e-12 * np.abs(dw).max()  # the preserved directions are untouched
    assert np.linalg.norm(dw) > 0.1


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_edit_leaves_the_preserved_keys_and_reaches_the_target(arch):
    model, tok, adapter = setup_tiny(arch)
    layer = 1
    C0 = collect_key_stats(model, tok, adapter, [layer], TEXTS, max_tokens=20, progress=False)[layer].double()
    K0 = torch.linalg.eigh(C0)
    C = C0 + 1e-9 * C0.diagonal().mean() * torch.eye(C0.shape[0], dtype=torch.float64)  # invertible: rank 20 < d_ff
    threshold = 1e-6 * float(K0.eigenvalues[-1])
    preserved = K0.eigenvectors[:, K0.eigenvalues > threshold]  # (d_ff, <= 20): the preserved keys' span
    assert 5 <= preserved.shape[1] <= 20
    before = read_keys(model, tok, adapter, [A], ["{}"], [layer], block_out_layer=layer)
    res = edit(model, tok, A, method="alphaedit", layers=[layer], stats={layer: C},
               hparams=dict(FAST, nullspace_threshold=threshold))
    dw = res.delta.change(layer)
    assert (dw @ preserved).norm() < 1e-9 * dw.norm()  # outputs of keys in the preserved span unchanged
    z_star = res.diagnostics[0].v_star.double()
    after = read_keys(model, tok, adapter, [A], ["{}"], [layer], block_out_layer=layer)
    moved, wanted = after.block_out[0] - before.block_out[0], z_star - before.block_out[0]
    assert wanted.norm() > 0.1 and (moved - wanted).norm() < 1e-3 * wanted.norm()  # the edit reaches z*
    res.restore()


def test_sequential_state_keeps_earlier_edits_and_restores_bitwise():
    model, tok, adapter = setup_tiny("gpt2")
    layer = 1
    original = adapter.weight_param(model, layer).detach().clone()
    C0 = collect_key_stats(model, tok, adapter, [layer], TEXTS, max_tokens=20, progress=False)[layer].double()
    C = {layer: C0 + 1e-9 * C0.diagonal().mean() * torch.eye(C0.shape[0], dtype=torch.float64)}
    hp = dict(FAST, nullspace_threshold=1e-6 * float(torch.linalg.eigvalsh(C0)[-1]))
    ra = edit(model, tok, A, method="alphaedit", layers=[layer], stats=C, hparams=hp)
    k_a = read_keys(model, tok, adapter, [A], ["{}"], [layer]).k_star[layer]  # A's key (the layer's input is unedited)
    assert isinstance(ra.state, AlphaEditState)
    torch.testing.assert_close(ra.state.edited[layer], k_a.T @ k_a, rtol=1e-10, atol=1e-12)
    rb = edit(model, tok, B, method="alphaedit", layers=[layer], stats=C, hparams=hp, state=ra.state)
    with_state = rb.delta.change(layer) @ k_a[0]
    k_b = read_keys(model, tok, adapter, [B], ["{}"], [layer]).k_star[layer]
    torch.testing.assert_close(rb.state.edited[layer], k_a.T @ k_a + k_b.T @ k_b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ra.state.edited[layer], k_a.T @ k_a, rtol=0, atol=0)  # continued on a copy
    assert rb.state.projections[layer][2] is ra.state.projections[layer][2]  # P of the same C: computed once
    rb.restore()
    fresh = edit(model, tok, B, method="alphaedit", layers=[layer], stats=C, hparams=hp)
    without_state = fresh.delta.change(layer) @ k_a[0]
    # B's update on A's key: with A's keys in the state it is pushed towards zero, without them it is not
    assert with_state.norm() < 1e-2 * without_state.norm() and without_state.norm() > 1e-3
    fresh.restore()
    ra.restore()
    assert torch.equal(adapter.weight_param(model, layer), original)


def test_alphaedit_refuses_c_equal_to_i_and_an_empty_null_space():
    model, tok, adapter = setup_tiny("gpt2")
    with pytest.raises(ValueError, match="pass stats="):
        edit(model, tok, A, method="alphaedit", layers=[1], hparams=FAST)
    with pytest.raises(ValueError, match="alphaedit needs key statistics C"):
        edit(model, tok, A, method="alphaedit", layers=[1], hparams=dict(FAST, mom2_adjustment=False))
    C = {1: torch.eye(adapter.d_ff(model), dtype=torch.float64)}
    with pytest.raises(ValueError, match="no eigenvalue of layer 1's C lies below nullspace_threshold=0.02"):
        edit(model, tok, A, method="alphaedit", layers=[1], hparams=FAST, stats=C)
    with pytest.raises(ValueError, match="keeps no state"):
        edit(model, tok, A, method="r-rome", layer=1, hparams=dict(context_templates=[]), state=AlphaEditState())
