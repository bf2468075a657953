"""Denoisers for MoLRG data: the paper's low-rank network, a generic MLP (core's EDM-preconditioned
``MLPDenoiser``, built from a config by :func:`mlp_denoiser`), and the empirical optimum.

All follow the denoiser contract ``denoiser(x, sigma, **extra) -> x0_hat`` with ``x: (B, n)`` and
``sigma`` a scalar or ``(B,)`` (VE convention ``x_σ = x₀ + σ ε``).
"""
from __future__ import annotations

import torch
from torch import nn

from genlowdim.core import kernels
from genlowdim.core.precondition import MLPDenoiser, sigma_per_row

__all__ = ["LowRankDenoiser", "MLPDenoiser", "EmpiricalDenoiser", "mlp_denoiser"]


class LowRankDenoiser(nn.Module):
    """Paper's parameterisation θ = {U_k}: ``x_θ = s/(s²+γ²) Σ_k w_k(x) U_k U_kᵀ x``.

    ``mode="soft"``: ``w = softmax_k(φ_t ||U_kᵀ x||²)``, ``φ_t = s²/(2γ²(s²+γ²))`` — the exact MoLRG
    posterior mean with equal weights and dimensions, computed by ``core.kernels.molrg_denoise``.
    ``mode="hard"``: ``w`` is the indicator of ``argmax_k ||U_kᵀ x||`` (training = K-subspaces).
    Bases are kept orthonormal by calling :meth:`retract` (QR) after every optimiser step.
    """

    def __init__(self, num_subspaces: int, ambient_dim: int, subspace_dim: int, mode: str = "soft",
                 *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if mode not in ("soft", "hard"):
            raise ValueError(f"LowRankDenoiser: mode must be 'soft' or 'hard', got {mode!r}")
        if subspace_dim > ambient_dim:
            raise ValueError(f"LowRankDenoiser: subspace dimension d={subspace_dim} exceeds n={ambient_dim}")
        self.mode = mode
        init = torch.randn(num_subspaces, ambient_dim, subspace_dim, generator=generator, dtype=dtype)
        self.bases = nn.Parameter(init)
        self.retract()

    @classmethod
    def from_bases(cls, bases: torch.Tensor, mode: str = "soft") -> "LowRankDenoiser":
        """Start from given bases ``(K, n, d)`` (e.g. the spectral-clustering solution)."""
        model = cls(*bases.shape, mode=mode, dtype=bases.dtype)
        with torch.no_grad():
            model.bases.copy_(bases)
        model.retract()
        return model

    @torch.no_grad()
    def retract(self) -> None:
        """Map each U_k back to the Stiefel manifold: Q of its QR with diag(R) > 0 (continuous)."""
        q, r = torch.linalg.qr(self.bases)
        signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
        signs = torch.where(signs == 0, torch.ones_like(signs), signs)
        self.bases.copy_(q * signs.unsqueeze(-2))

    def forward(self, x: torch.Tensor, sigma, s=1.0, **_: object) -> torch.Tensor:
        bases = self.bases.to(x.dtype)
        if self.mode == "soft":
            logw = torch.zeros(bases.shape[0], dtype=x.dtype, device=x.device)
            return kernels.molrg_denoise(x, bases, logw, sigma, s=s, check=False)
        gamma = sigma_per_row(sigma, x)
        s_t = sigma_per_row(s, x)
        coeffs = torch.einsum("knd,bn->bkd", bases, x)
        best = coeffs.pow(2).sum(-1).argmax(dim=1)
        chosen = coeffs[torch.arange(x.shape[0], device=x.device), best]
        proj = torch.einsum("bnd,bd->bn", bases[best], chosen)
        return s_t / (s_t ** 2 + gamma ** 2) * proj


def mlp_denoiser(dim: int, model_cfg, generator: torch.Generator | None = None) -> MLPDenoiser:
    """Core's EDM-preconditioned MLP from a ``ModelConfig``: ``depth`` hidden layers of width ``hidden``,
    Fourier features of the noise code with std ``fourier_scale`` (frequencies from ``generator``)."""
    if model_cfg.depth < 1 or model_cfg.hidden < 1:
        raise ValueError(f"MLPDenoiser: need depth >= 1 and hidden >= 1, got {model_cfg.depth}, "
                         f"{model_cfg.hidden}")
    return MLPDenoiser(dim, [model_cfg.hidden] * model_cfg.depth, sigma_data=model_cfg.sigma_data,
                       fourier_scale=model_cfg.fourier_scale, generator=generator)


class EmpiricalDenoiser(nn.Module):
    """Optimal denoiser of the empirical distribution of ``train: (N, n)``:
    ``E[x₀|x] = Σ_i softmax_i(-||x - x_i||² / (2σ²)) x_i`` — its samples reproduce training points.
    """

    def __init__(self, train: torch.Tensor):
        super().__init__()
        if train.dim() != 2 or train.shape[0] == 0:
            raise ValueError(f"EmpiricalDenoiser: expected training points (N, n), got {tuple(train.shape)}")
        self.register_buffer("points", train)

    def forward(self, x: torch.Tensor, sigma, **_: object) -> torch.Tensor:
        data = self.points.to(x.dtype)
        sig = sigma_per_row(sigma, x)
        sq = torch.cdist(x, data).pow(2)
        weights = torch.softmax(-sq / (2 * sig ** 2), dim=1)
        return weights @ data
