"""Closed-form log-densities, scores and posterior means (batched, device/dtype-agnostic).

Shapes: ``x: (B, n)`` unless stated. Low-rank covariances ``U diag(variance) U^T + noise_var I`` are
handled with the Woodbury identity and the matrix determinant lemma, so memory is O(B n + n d + B d)
and no ``n x n`` matrix is formed. The mixture of low-rank Gaussians (MoLRG; Wang et al. 2024,
arXiv 2409.02426, posterior-mean formula of Sec. 3) uses ``bases: (K, n, d)`` with orthonormal columns,
``log_weights: (K,)`` (log pi_k, normalised here) and the forward process ``x_t = s x_0 + sigma eps``.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "gaussian_score",
    "lowrank_gaussian_logpdf",
    "lowrank_gaussian_score",
    "molrg_logpdf",
    "molrg_posterior_weights",
    "molrg_denoise",
    "molrg_score",
    "wrapped_normal_images",
    "wrapped_normal_logpdf",
    "wrapped_normal_score",
]

LOG_2PI = math.log(2 * math.pi)


def _rows(v, x: torch.Tensor, name: str) -> torch.Tensor:
    """Scalar or per-row value as a ``(B, 1)`` (or 0-dim) tensor on x's device/dtype."""
    v = torch.as_tensor(v, device=x.device, dtype=x.dtype)
    if v.ndim == 0:
        return v
    if v.shape == (x.shape[0],):
        return v[:, None]
    raise ValueError(f"{name} must be a scalar or of shape ({x.shape[0]},), got {tuple(v.shape)}")


def _check_vectors(fn: str, x: torch.Tensor, n: int) -> None:
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"{fn}: x must have shape (B, {n}), got {tuple(x.shape)}")


def gaussian_score(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Score of N(mean, cov): ``-cov^{-1} (x - mean)``. x: (B, n); mean: (n,) or (B, n); cov: (n, n) SPD."""
    _check_vectors("gaussian_score", x, cov.shape[-1])
    chol = torch.linalg.cholesky(cov)
    return -torch.cholesky_solve((x - mean).T, chol).T


# --------------------------------------------------------------------------------- low-rank Gaussian


def _woodbury(U: torch.Tensor, variance: torch.Tensor, noise_var) -> tuple[torch.Tensor, torch.Tensor]:
    """Cholesky factor of the capacitance ``C = diag(noise_var / variance) + U^T U`` (d, d) and logdet Sigma.

    Sigma = U diag(v) U^T + eta I  =>  Sigma^{-1} = (I - U C^{-1} U^T) / eta and
    log det Sigma = log det C + sum log v + (n - d) log eta.
    """
    n, d = U.shape
    eta = torch.as_tensor(noise_var, device=U.device, dtype=U.dtype)
    if (variance <= 0).any() or eta <= 0:
        raise ValueError("low-rank Gaussian: variance entries and noise_var must be > 0")
    cap = torch.diag_embed(eta / variance) + U.T @ U
    chol = torch.linalg.cholesky(cap)
    logdet = 2 * chol.diagonal().log().sum() + variance.log().sum() + (n - d) * eta.log()
    return chol, logdet


def lowrank_gaussian_logpdf(x, mean, U, variance, noise_var) -> torch.Tensor:
    """log N(x; mean, U diag(variance) U^T + noise_var I), shape (B,).

    x: (B, n); mean: (n,) or (B, n); U: (n, d) (any full column rank); variance: (d,) > 0; noise_var > 0.
    """
    _check_vectors("lowrank_gaussian_logpdf", x, U.shape[0])
    chol, logdet = _woodbury(U, variance, noise_var)
    r = x - mean
    proj = r @ U
    inner = torch.cholesky_solve(proj.T, chol).T
    quad = ((r * r).sum(1) - (proj * inner).sum(1)) / noise_var
    return -0.5 * (quad + logdet + U.shape[0] * LOG_2PI)


def lowrank_gaussian_score(x, mean, U, variance, noise_var) -> torch.Tensor:
    """Score ``-Sigma^{-1} (x - mean)`` of the low-rank Gaussian above via Woodbury, shape (B, n)."""
    _check_vectors("lowrank_gaussian_score", x, U.shape[0])
    chol, _ = _woodbury(U, variance, noise_var)
    r = x - mean
    inner = torch.cholesky_solve((r @ U).T, chol).T
    return -(r - inner @ U.T) / noise_var


# ----------------------------------------------------------------------- mixture of low-rank Gaussians


def _check_bases(bases: torch.Tensor, log_weights: torch.Tensor, x: torch.Tensor, check: bool) -> None:
    if bases.ndim != 3:
        raise ValueError(f"MoLRG: bases must have shape (K, n, d), got {tuple(bases.shape)}")
    K, n, d = bases.shape
    _check_vectors("MoLRG", x, n)
    if log_weights.shape != (K,):
        raise ValueError(f"MoLRG: log_weights must have shape ({K},), got {tuple(log_weights.shape)}")
    if check:
        gram = bases.transpose(1, 2) @ bases
        err = (gram - torch.eye(d, device=x.device, dtype=x.dtype)).abs().amax()
        # loose enough for float32-orthonormalised bases used in float64; catches unnormalised/skewed bases
        tol = max(1e-4, 100 * torch.finfo(x.dtype).eps * n)
        if err > tol:
            raise ValueError(
                f"MoLRG: the columns of each bases[k] must be orthonormal (max |U^T U - I| = {err:.2e} > {tol:.1e}); "
                "orthonormalise with torch.linalg.qr"
            )


def _flat(bases: torch.Tensor) -> torch.Tensor:
    """(K, n, d) -> (n, K d): all bases side by side, so projections and mixing are single GEMMs."""
    return bases.permute(1, 0, 2).reshape(bases.shape[1], -1)


def _molrg_terms(x, bases, log_weights, sigma, s, noise_var, check):
    """Shared pieces: projections (B, K, d), posterior weights (B, K), and per-row s, tau², gamma² (B, 1).

    With ambient noise eta² = noise_var the data are x_0 = U_k a + e, e ~ N(0, eta² I), and given k
    x_t ~ N(0, s² U_k U_k^T + tau² I) with tau² = s² eta² + sigma².
    """
    _check_bases(bases, log_weights, x, check)
    s, sigma = _rows(s, x, "s"), _rows(sigma, x, "sigma")
    if (sigma <= 0).any() and noise_var == 0:
        raise ValueError("MoLRG: sigma must be > 0 without ambient noise (the density is singular)")
    gamma2 = sigma**2
    tau2 = s**2 * noise_var + gamma2
    proj = (x @ _flat(bases)).unflatten(1, bases.shape[::2])  # (B, K, d), one GEMM
    phi = s**2 / (2 * tau2 * (s**2 + tau2))
    d = bases.shape[2]
    logits = log_weights.log_softmax(0) - 0.5 * d * torch.log1p(s**2 / tau2) + phi * proj.pow(2).sum(-1)
    return proj, logits, s, tau2, gamma2


def molrg_posterior_weights(x, bases, log_weights, sigma, s=1.0, noise_var=0.0, *, check=True):
    """Posterior component probabilities P(k | x_t), shape (B, K), by log-sum-exp over
    ``log pi_k - d/2 log(1 + s²/tau²) + phi ||U_k^T x||²``, phi = s² / (2 tau² (s² + tau²)).

    sigma, s: scalars or (B,); noise_var: eta² of the data's ambient noise (tau² = s² eta² + sigma²).
    """
    _, logits, *_ = _molrg_terms(x, bases, log_weights, sigma, s, noise_var, check)
    return logits.softmax(-1)


def molrg_denoise(x, bases, log_weights, sigma, s=1.0, noise_var=0.0, *, check=True):
    """Exact posterior mean E[x_0 | x_t], shape (B, n):

    ``s eta²/tau² x + s sigma² / (tau² (s² + tau²)) sum_k w_k U_k U_k^T x``; with eta = 0 this is
    ``s / (s² + sigma²) sum_k w_k U_k U_k^T x`` (Wang et al. 2024).
    """
    proj, logits, s, tau2, gamma2 = _molrg_terms(x, bases, log_weights, sigma, s, noise_var, check)
    w = logits.softmax(-1)
    mix = (w.unsqueeze(-1) * proj).flatten(1) @ _flat(bases).T  # sum_k w_k U_k U_k^T x, (B, n)
    return s * gamma2 / (tau2 * (s**2 + tau2)) * mix + s * noise_var / tau2 * x


def molrg_score(x, bases, log_weights, sigma, s=1.0, noise_var=0.0, *, check=True):
    """Score of p_t: ``-x / tau² + s² / (tau² (s² + tau²)) sum_k w_k U_k U_k^T x`` (= (s E[x_0|x_t] - x) / sigma²)."""
    proj, logits, s, tau2, _ = _molrg_terms(x, bases, log_weights, sigma, s, noise_var, check)
    w = logits.softmax(-1)
    mix = (w.unsqueeze(-1) * proj).flatten(1) @ _flat(bases).T  # sum_k w_k U_k U_k^T x, (B, n)
    return s**2 / (tau2 * (s**2 + tau2)) * mix - x / tau2


def molrg_logpdf(x, bases, log_weights, sigma, s=1.0, noise_var=0.0, *, check=True):
    """log p_t(x) of the noised MoLRG, shape (B,): logsumexp_k of
    ``log pi_k + log N(x; 0, s² U_k U_k^T + tau² I)`` computed from the projections only."""
    proj, logits, s, tau2, _ = _molrg_terms(x, bases, log_weights, sigma, s, noise_var, check)
    n = bases.shape[1]
    base = -0.5 * (n * LOG_2PI + n * tau2.log() + x.pow(2).sum(1, keepdim=True) / tau2)
    return (logits + base).logsumexp(-1)


# ------------------------------------------------------------------------------------- wrapped normal


def wrapped_normal_images(sigma, tol: float = 1e-12, max_images: int = 1000) -> int:
    """Smallest K >= 1 such that keeping images |k| <= K of the nearest one meets ``tol``.

    Error bound: with d = x - mu reduced to [-1/2, 1/2), every dropped image k has |d + k| >= |k| - 1/2,
    so the dropped (unnormalised) tail is <= T_K = 2 sum_{k>K} exp(-(k - 1/2)² / (2 sigma²)), and relative
    to the kept sum (>= the nearest term >= exp(-1 / (8 sigma²))) it is <= 2 sum_{k>K} exp(-k (k-1) / (2 sigma²)).
    K is chosen so that this relative bound is <= tol; the log-density error is then <= tol.
    """
    sigma_max = float(torch.as_tensor(sigma).max())
    if not sigma_max > 0:
        raise ValueError(f"wrapped normal: sigma must be > 0, got max {sigma_max}")
    ks = torch.arange(1, max_images + 60, dtype=torch.float64)
    terms = torch.exp(-ks * (ks - 1) / (2 * sigma_max**2))
    tails = 2 * (terms.flip(0).cumsum(0).flip(0))  # tails[j] = 2 sum_{k >= j+1} -> bound for K = j
    ok = torch.nonzero(tails[1:] <= tol)
    if ok.numel() == 0 or int(ok[0]) + 1 > max_images:
        raise ValueError(
            f"wrapped normal: sigma={sigma_max:.3g} needs more than {max_images} images; "
            "the density is uniform on the torus to within tol at this sigma"
        )
    return max(1, int(ok[0]) + 1)


def _wrapped_terms(x, mu, sigma, n_images, tol):
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    K = wrapped_normal_images(sigma, tol) if n_images is None else int(n_images)
    d = torch.remainder(x - mu + 0.5, 1.0) - 0.5
    ks = torch.arange(-K, K + 1, device=x.device, dtype=x.dtype)
    shifted = d.unsqueeze(-1) + ks
    sig = sigma.unsqueeze(-1) if sigma.ndim else sigma
    return shifted, -0.5 * (shifted / sig) ** 2, sig


def wrapped_normal_logpdf(x, mu, sigma, n_images: int | None = None, tol: float = 1e-12) -> torch.Tensor:
    """Per-coordinate log-density of the wrapped normal on the unit torus [0, 1)^D:
    ``log sum_k N(x + k; mu, sigma²)``, k over |k| <= K images around the nearest one.

    x, mu, sigma broadcast together (e.g. fractional coordinates (N, 3), sigma (N, 1)); the result has the
    broadcast shape; sum over the last dim for a joint density. ``n_images`` = K, or None to choose K from
    sigma and ``tol`` (:func:`wrapped_normal_images`, which states the truncation bound).
    """
    _, logits, sig = _wrapped_terms(x, mu, sigma, n_images, tol)
    return logits.logsumexp(-1) - (sig.squeeze(-1) if sig.ndim else sig).log() - 0.5 * LOG_2PI


def wrapped_normal_score(x, mu, sigma, n_images: int | None = None, tol: float = 1e-12) -> torch.Tensor:
    """d/dx of :func:`wrapped_normal_logpdf`: ``-sum_k w_k (x - mu + k) / sigma²``, w = softmax of the image
    log-terms; same shape as the log-density. Periodic in x with period 1."""
    shifted, logits, sig = _wrapped_terms(x, mu, sigma, n_images, tol)
    return -(logits.softmax(-1) * shifted).sum(-1) / (sig.squeeze(-1) if sig.ndim else sig) ** 2
