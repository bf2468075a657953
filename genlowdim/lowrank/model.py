"""Denoisers for MoLRG data: the paper's low-rank network, a generic MLP, and the empirical optimum.

All follow the denoiser contract ``denoiser(x, sigma, **extra) -> x0_hat`` with ``x: (B, n)`` and
``sigma`` a scalar or ``(B,)`` (VE convention ``x_σ = x₀ + σ ε``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from genlowdim.core import kernels


def _per_row(value, x: torch.Tensor) -> torch.Tensor:
    """(B, 1) view of a scalar or (B,) noise level, in x's dtype/device."""
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return t.reshape(-1, 1) if t.dim() >= 1 and t.numel() > 1 else t.reshape(1, 1).expand(x.shape[0], 1)


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
        gamma = _per_row(sigma, x)
        s_t = _per_row(s, x)
        coeffs = torch.einsum("knd,bn->bkd", bases, x)
        best = coeffs.pow(2).sum(-1).argmax(dim=1)
        chosen = coeffs[torch.arange(x.shape[0], device=x.device), best]
        proj = torch.einsum("bnd,bd->bn", bases[best], chosen)
        return s_t / (s_t ** 2 + gamma ** 2) * proj


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar noise code (EDM/NCSN++ style); frequencies are a buffer."""

    def __init__(self, dim: int, scale: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2, generator=generator) * scale)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * c_noise.reshape(-1, 1) * self.freqs.to(c_noise.dtype)
        return torch.cat([arg.cos(), arg.sin()], dim=-1)


class MLPDenoiser(nn.Module):
    """σ-conditioned MLP with EDM preconditioning (Karras et al. 2022, Table 1):
    ``D(x, σ) = c_skip x + c_out F(c_in x, c_noise)``, ``c_skip = σ_d²/(σ²+σ_d²)``,
    ``c_out = σ σ_d / sqrt(σ²+σ_d²)``, ``c_in = 1/sqrt(σ²+σ_d²)``, ``c_noise = ln(σ)/4``.
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, sigma_data: float = 1.0,
                 embed_dim: int = 64, fourier_scale: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise ValueError(f"MLPDenoiser: need depth >= 1 and hidden >= 1, got {depth}, {hidden}")
        self.dim, self.sigma_data = dim, float(sigma_data)
        self.embed = FourierEmbedding(embed_dim, scale=fourier_scale, generator=generator)
        layers: list[nn.Module] = [nn.Linear(dim + embed_dim, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma, **_: object) -> torch.Tensor:
        sig = _per_row(sigma, x)
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / (sig ** 2 + sd2)
        c_out = sig * self.sigma_data / (sig ** 2 + sd2).sqrt()
        c_in = 1.0 / (sig ** 2 + sd2).sqrt()
        c_noise = sig.clamp_min(1e-12).log() / 4
        feats = torch.cat([c_in * x, self.embed(c_noise).to(x.dtype)], dim=-1)
        return c_skip * x + c_out * self.net(feats)


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
        sig = _per_row(sigma, x)
        sq = torch.cdist(x, data).pow(2)
        weights = torch.softmax(-sq / (2 * sig ** 2), dim=1)
        return weights @ data
