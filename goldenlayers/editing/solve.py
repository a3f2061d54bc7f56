"""Closed-form weight updates of ROME, R-ROME, MEMIT and EMMET (docs/equations.md "Editing methods"), all in float64.

Keys are rows here: K is (n, d_ff) (n cases), residuals R are (n, d_model); updates dW are (d_model, d_ff).

    ROME / R-ROME   dW = (v* - W k - b) (C^-1 k*)^T / (k^T C^-1 k*)        (R-ROME: k = k*)
    MEMIT           dW = R^T K (w C + K^T K)^-1   = R^T (w I + K C^-1 K^T)^-1 K C^-1
    EMMET           dW = R^T (K C0^-1 K^T + lambda_e I)^-1 K C0^-1,   C0 = w C

MEMIT's form is rewritten with the push-through identity so that only C^-1 K^T (one Cholesky of C, or nothing
for C = I) and n x n solves are needed, never a second d_ff x d_ff factorisation. `check_key_cov` is the one
validator of C (square, finite, symmetric, not numerically singular), run before anything is edited.
"""

from __future__ import annotations

import torch


class StatsError(ValueError):
    """Key statistics C that cannot be used (wrong shape, NaN/inf, singular)."""


MAX_COND = 1e12  # the largest condition number of C that is inverted (in float64)


def _unusable(layer: int, d: int, detail: str) -> StatsError:
    return StatsError(f"key statistics of layer {layer} are singular or ill-conditioned ({detail}): collect keys "
                      f"from more tokens than d_ff={d}, or edit with C = I (mom2_adjustment=False)")


def check_key_cov(C: torch.Tensor, layer: int, d_ff: int | None = None, max_cond: float = MAX_COND,
                  exact: bool = True) -> float:
    """The one validator of key statistics: raise StatsError (naming the layer, saying what to do) unless C is a
    finite, symmetric (d_ff, d_ff) matrix whose condition number is at most `max_cond`; checked in float64.
    Returns the condition number: exact (lambda_max / lambda_min from the eigenvalues; the rank is reported when
    it fails) or, with exact=False, the cheap estimate from a Cholesky factor's diagonal that `KeyCov` uses."""
    d = d_ff or C.shape[-1]
    if C.ndim != 2 or tuple(C.shape) != (d, d):
        raise StatsError(f"key statistics of layer {layer} have shape {tuple(C.shape)}, expected ({d}, {d})")
    C = C.to(torch.float64)
    if not torch.isfinite(C).all():
        raise StatsError(f"key statistics of layer {layer} contain NaN or inf; recompute them")
    if not torch.allclose(C, C.T, rtol=1e-6, atol=1e-12 * float(C.abs().max())):
        raise StatsError(f"key statistics of layer {layer} are not symmetric; they are not a second moment")
    if not exact:
        chol, info = torch.linalg.cholesky_ex((C + C.T) / 2)
        diag = chol.diagonal()
        cond = float((diag.max() / diag.min()) ** 2) if int(info) == 0 and torch.isfinite(diag).all() else float("inf")
        if not cond <= max_cond:
            raise _unusable(layer, d, "no Cholesky factor" if cond == float("inf") else f"condition number about "
                                                                                         f"{cond:.3g} > {max_cond:.0e}")
        return cond
    eig = torch.linalg.eigvalsh(C)  # ascending
    cond = float(eig[-1] / eig[0]) if eig[0] > 0 else float("inf")
    if not cond <= max_cond:
        rank = int(torch.linalg.matrix_rank(C, hermitian=True))
        raise _unusable(layer, d, f"rank {rank} of {d}, condition number {cond:.3g} > {max_cond:.0e}")
    return cond


class KeyCov:
    """C = E[k k^T] of one layer's keys (d_ff x d_ff) as a float64 Cholesky factor, or the identity (C = I).
    matrix: C itself (before shrinkage; None for the identity, and unless asked for), for methods that need more
    than C^-1 (AlphaEdit's null space)."""

    def __init__(self, d_ff: int, chol: torch.Tensor | None = None, label: str = "identity",
                 matrix: torch.Tensor | None = None):
        self.d_ff, self.chol, self.label, self.matrix = d_ff, chol, label, matrix

    @classmethod
    def identity(cls, d_ff: int) -> KeyCov:
        return cls(d_ff)

    @classmethod
    def from_matrix(cls, C: torch.Tensor, layer: int, d_ff: int, device=None, max_cond: float = MAX_COND,
                    shrinkage: float = 0.0, keep: bool = False) -> KeyCov:
        """Validate (`check_key_cov`) and factorise C + shrinkage * mean(diag C) * I (shrinkage 0: C as given;
        larger values move C^-1 k towards the identity's k, `mom2_shrinkage`). keep: also keep C (float64,
        unshrunk) as `matrix`, for a method that needs C itself (another d_ff x d_ff matrix in memory)."""
        check_key_cov(C, layer, d_ff, max_cond, exact=False)
        C = C.to(device=device, dtype=torch.float64)
        C = (C + C.T) / 2
        shrunk = C + shrinkage * C.diagonal().mean() * torch.eye(d_ff, dtype=C.dtype, device=C.device) \
            if shrinkage else C
        chol, info = torch.linalg.cholesky_ex(shrunk)
        if int(info) != 0:
            raise _unusable(layer, d_ff, "no Cholesky factor")
        return cls(d_ff, chol, label="stats", matrix=C if keep else None)

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
