"""AlphaEdit: MEMIT's update projected onto the null space of the preserved keys (Fang et al. 2025, "AlphaEdit:
Null-Space Constrained Knowledge Editing for Language Models"; docs/editing.md "AlphaEdit").

The preserved knowledge is summarised by the key statistics C = E[k0 k0^T] of a text corpus (the same C as
MEMIT's; it has the eigenvectors of K0 K0^T). Let U hold the eigenvectors of C whose eigenvalues lie below
`nullspace_threshold`, and P = U U^T the projection onto that (near-)null space: P k0 ~ 0 for the preserved keys.
With the cases' keys K (n, d_ff) at a layer, their residuals R (n, d_model) (MEMIT's layer loop and residual
spread, editing.memit.spread) and S the sum of K_p^T K_p over the keys edited before in a sequence:

    dW = R^T K P ((K^T K + S) P + alpha I)^-1 = R^T K (P (K^T K + S) + alpha I)^-1 P      (alpha = alphaedit_ridge)

the minimiser of ||dW K^T - R^T||^2 + alpha ||dW||^2 + ||dW K_p^T||^2 over updates of the form dW = dW P. Because
dW ends in P, dW k0 = 0 for every key in the preserved span (the edit leaves those outputs unchanged), and with
a small alpha the edited keys reach their targets (dW k = r k^T P k / (alpha + k^T P k) for one case). The
paper writes the ridge as the identity (alpha = 1, the default). Sequential editing keeps S (`AlphaEditState`,
the keys of every earlier edit at each layer): a later edit is then pushed to leave their outputs as they are.
C is required (with C = I nothing lies below the threshold and P = 0): `needs_stats`. The d_ff x d_ff solve
and the eigen-decomposition of C (once per layer and C, kept in the state) cost O(d_ff^3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pydantic import Field

from goldenlayers.cases import EditCase
from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.hparams import EditHParams
from goldenlayers.editing.memit import spread
from goldenlayers.editing.method import EditContext, EditMethod
from goldenlayers.editing.solve import KeyCov
from goldenlayers.editing.values import ValueTargets


class AlphaEditSettings(EditHParams):
    """AlphaEdit: nullspace_threshold: eigenvalues of C below it span the null space the update lives in
    (the paper's code uses 2e-2 for C as the mean of k k^T over a corpus); alphaedit_ridge: alpha, the weight
    of ||dW||^2 (the paper's identity term). mom2_adjustment is on by default: AlphaEdit needs C."""

    mom2_adjustment: bool = True
    nullspace_threshold: float = Field(2e-2, gt=0)
    alphaedit_ridge: float = Field(1.0, gt=0)


@dataclass
class AlphaEditState:
    """What a sequence of AlphaEdit edits remembers. edited: {layer: S = sum of K^T K (d_ff, d_ff) float64 of
    the keys edited so far}; projections: {layer: (C, threshold, P)}, the projection computed from that C, reused
    while C and the threshold are the same (shared between copies: it never changes)."""

    edited: dict[int, torch.Tensor] = field(default_factory=dict)
    projections: dict[int, tuple[torch.Tensor, float, torch.Tensor]] = field(default_factory=dict)

    def copy(self) -> AlphaEditState:
        return AlphaEditState({lay: s.clone() for lay, s in self.edited.items()}, dict(self.projections))


def null_space_projection(C: torch.Tensor, threshold: float) -> torch.Tensor:
    """P = U U^T (d_ff, d_ff) float64, U the eigenvectors of the symmetric C with eigenvalues below `threshold`."""
    C = C.to(torch.float64)
    eigvals, eigvecs = torch.linalg.eigh((C + C.T) / 2)
    U = eigvecs[:, eigvals < threshold]
    return U @ U.T


def alphaedit_update(K: torch.Tensor, R: torch.Tensor, P: torch.Tensor, ridge: float,
                     edited: torch.Tensor | None = None) -> torch.Tensor:
    """dW (d_model, d_ff) = R^T K (P (K^T K + S) + ridge I)^-1 P for keys K (n, d_ff), residuals R (n, d_model),
    the null-space projection P and S = `edited` (the earlier edits' K_p^T K_p; None: no earlier edit)."""
    P = P.to(torch.float64)
    K, R = K.to(P), R.to(P)
    A = K.T @ K if edited is None else K.T @ K + edited.to(P)
    M = P @ A + ridge * torch.eye(P.shape[0], dtype=P.dtype, device=P.device)
    # X M = R^T K  <=>  M^T X^T = K^T R  (then X P is the update)
    X = torch.linalg.solve(M.T, K.T @ R).T
    return X @ P


def _projection(state: AlphaEditState, cov: KeyCov, layer: int, threshold: float) -> torch.Tensor:
    if cov.matrix is None:
        raise ValueError(f"AlphaEdit needs key statistics C of layer {layer} (its null space): pass stats=")
    cached = state.projections.get(layer)
    if cached is not None and cached[1] == threshold and (cached[0] is cov.matrix or torch.equal(cached[0], cov.matrix)):
        return cached[2]
    P = null_space_projection(cov.matrix, threshold)
    if not P.abs().sum() > 0:
        top = float(torch.linalg.eigvalsh(cov.matrix.to(torch.float64))[0])
        raise ValueError(f"AlphaEdit: no eigenvalue of layer {layer}'s C lies below nullspace_threshold={threshold:g} "
                         f"(the smallest is {top:.3g}): every direction is preserved, nothing can be edited; raise "
                         "nullspace_threshold")
    state.projections[layer] = (cov.matrix, threshold, P)
    return P


def apply_alphaedit(ctx: EditContext, cases: list[EditCase], targets: ValueTargets, delta: WeightDelta) -> float:
    hp, state = ctx.hp, ctx.state

    def solve(K: torch.Tensor, R: torch.Tensor, cov: KeyCov, layer: int) -> torch.Tensor:
        P = _projection(state, cov, layer, hp.nullspace_threshold)
        dw = alphaedit_update(K, R, P, hp.alphaedit_ridge, state.edited.get(layer))
        kk = K.to(P).T @ K.to(P)
        state.edited[layer] = state.edited[layer] + kk if layer in state.edited else kk
        return dw

    return spread(ctx, cases, targets, delta, solve)


ALPHAEDIT = EditMethod(
    name="alphaedit", family="memit", site="block", batch=True, multi_layer=True, apply=apply_alphaedit,
    summary="MEMIT's update projected onto the null space of the preserved keys' C; keeps earlier edits' keys",
    settings=AlphaEditSettings, needs_stats=True, new_state=AlphaEditState,
)
