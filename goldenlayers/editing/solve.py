"""Closed-form weight updates of ROME, R-ROME, MEMIT and EMMET (REFERENCE.md section 3), all in float64.

Keys are rows here: K is (n, d_ff) (n cases), residuals R are (n, d_model); updates dW are (d_model, d_ff).

    ROME / R-ROME   dW = (v* - W k - b) (C^-1 k*)^T / (k^T C^-1 k*)        (R-ROME: k = k*)
    MEMIT           dW = R^T K (w C + K^T K)^-1   = R^T (w I + K C^-1 K^T)^-1 K C^-1
    EMMET           dW = R^T (K C0^-1 K^T + lambda_e I)^-1 K C0^-1,   C0 = w C

MEMIT's form is rewritten with the push-through identity so that only C^-1 K^T (one Cholesky of C, or nothing
for C = I) and n x n solves are needed, never a second d_ff x d_ff factorisation. `KeyCov` checks C (square,
finite, positive definite and not numerically singular) before anything is edited.
"""

from __future__ import annotations

import torch


class StatsError(ValueError):
    """Key statistics C that cannot be used (wrong shape, NaN/inf, singular)."""


class KeyCov:
    """C = E[k k^T] of one layer's keys (d_ff x d_ff) as a float64 Cholesky factor; or the identity (C = I)."""

    def __init__(self, d_ff: int, chol: torch.Tensor | None = None, label: str = "identity"):
        self.d_ff, self.chol, self.label = d_ff, chol, label

    @classmethod
    def identity(cls, d_ff: int) -> KeyCov:
        return cls(d_ff)

    @classmethod
    def from_matrix(cls, C: torch.Tensor, layer: int, d_ff: int, device=None, max_cond: float = 1e12,
                    shrinkage: float = 0.0) -> KeyCov:
        """Validate and factorise C + shrinkage * mean(diag C) * I (shrinkage 0: C as given; larger values move
        C^-1 k towards the identity's k, EditHParams.mom2_shrinkage); raise StatsError naming the layer when it
        cannot be used."""
        if tuple(C.shape) != (d_ff, d_ff):
            raise StatsError(f"key statistics of layer {layer} have shape {tuple(C.shape)}, expected ({d_ff}, {d_ff})")
        C = C.to(device=device, dtype=torch.float64)
        if not torch.isfinite(C).all():
            raise StatsError(f"key statistics of layer {layer} contain NaN or inf; recompute them")
        C = (C + C.T) / 2
        if shrinkage:
            C = C + shrinkage * C.diagonal().mean() * torch.eye(d_ff, dtype=C.dtype, device=C.device)
        chol, info = torch.linalg.cholesky_ex(C)
        diag = chol.diagonal()
        if int(info) != 0 or not torch.isfinite(diag).all() or (diag.max() / diag.min()) ** 2 > max_cond:
            raise StatsError(
                f"key statistics of layer {layer} are singular or too ill-conditioned to invert (collect keys "
                f"from more tokens than d_ff={d_ff}, or use C = I with mom2_adjustment=False)"
            )
        return cls(d_ff, chol, label="stats")

    def solve(self, K: torch.Tensor) -> torch.Tensor:
        """C^-1 K^T for keys K (n, d_ff) -> (d_ff, n) float64."""
        Kt = K.T.to(torch.float64)
        if self.chol is None:
            return Kt.clone()
        return torch.cholesky_solve(Kt.to(self.chol.device), self.chol)


def rank_one_update(out_k: torch.Tensor, v_star: torch.Tensor, k: torch.Tensor, k_star: torch.Tensor,
                    cov: KeyCov) -> torch.Tensor:
    """ROME's dW (d_model, d_ff) for one case. out_k: W k + b (d_model,); k, k_star: (d_ff,); v_star: (d_model,)."""
    u = cov.solve(k_star[None])[:, 0]  # C^-1 k*  (d_ff,)
    denom = torch.dot(k.to(u), u)
    if not torch.isfinite(denom) or denom.abs() < 1e-30:
        raise FloatingPointError(f"ROME denominator k^T C^-1 k* = {float(denom):.3g} cannot be divided by")
    return torch.outer((v_star.to(u) - out_k.to(u)) / denom, u)


def memit_update(K: torch.Tensor, R: torch.Tensor, cov: KeyCov, weight: float) -> torch.Tensor:
    """MEMIT's dW = R^T K (w C + K^T K)^-1 (d_model, d_ff) for keys K (n, d_ff), residuals R (n, d_model)."""
    CiK = cov.solve(K)  # (d_ff, n)
    K = K.to(CiK)
    A = weight * torch.eye(K.shape[0], dtype=torch.float64, device=CiK.device) + K @ CiK  # (n, n)
    return R.to(CiK).T @ torch.linalg.solve(A, CiK.T)


def emmet_update(K: torch.Tensor, R: torch.Tensor, cov: KeyCov, weight: float, ridge: float) -> torch.Tensor:
    """EMMET's dW = R^T (K C0^-1 K^T + ridge I)^-1 K C0^-1 with C0 = weight * C; K (n, d_ff), R (n, d_model)."""
    C0iK = cov.solve(K) / weight  # (d_ff, n)
    K = K.to(C0iK)
    A = K @ C0iK + ridge * torch.eye(K.shape[0], dtype=torch.float64, device=C0iK.device)
    return R.to(C0iK).T @ torch.linalg.solve(A, C0iK.T)
