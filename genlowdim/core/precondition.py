"""EDM preconditioning (Karras et al. 2022, Table 1 and Eq. 7) and the σ-conditioned MLP denoiser built on it.

``D(x, σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ))`` with

    c_skip = σ_d² / (σ² + σ_d²),   c_out = σ σ_d / √(σ² + σ_d²),   c_in = 1 / √(σ² + σ_d²),   c_noise = ¼ ln σ,

σ_d the data standard deviation. The network F then sees inputs and targets of unit variance at every σ,
and D follows the VE denoiser contract ``denoiser(x, sigma) -> x0_hat``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

__all__ = ["EDMScalings", "edm_scalings", "FourierEmbedding", "MLPDenoiser", "sigma_per_row"]


class EDMScalings(NamedTuple):
    """The four EDM coefficients, each shaped like the σ they were computed from."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_scalings(sigma: torch.Tensor, sigma_data: float) -> EDMScalings:
    """EDM's c_skip, c_out, c_in, c_noise at noise levels ``sigma`` (any shape, > 0)."""
    total = sigma ** 2 + sigma_data ** 2
    return EDMScalings(sigma_data ** 2 / total, sigma * sigma_data / total.sqrt(), total.rsqrt(),
                       sigma.clamp_min(1e-12).log() / 4)


def sigma_per_row(sigma, x: torch.Tensor) -> torch.Tensor:
    """(B, 1) view of a scalar or (B,) noise level, in the dtype and device of ``x: (B, D)``."""
    t = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return t.reshape(-1, 1) if t.dim() >= 1 and t.numel() > 1 else t.reshape(1, 1).expand(x.shape[0], 1)


class FourierEmbedding(nn.Module):
    """Random Fourier features ``[cos 2πfc, sin 2πfc]`` of a scalar noise code c: (B,) or (B, 1) -> (B, dim);
    the frequencies f ~ N(0, scale²) are a buffer (EDM/NCSN++ style)."""

    def __init__(self, dim: int, scale: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2, generator=generator) * scale)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * c_noise.reshape(-1, 1) * self.freqs.to(c_noise.dtype)
        return torch.cat([arg.cos(), arg.sin()], dim=-1)


class MLPDenoiser(nn.Module):
    """EDM-preconditioned MLP ``forward(x: (B, D), sigma: () or (B,)) -> (B, D)``.

    F is an MLP with SiLU activations and hidden widths ``hidden``; its noise input is ``c_noise`` itself
    (``embed_dim=0``) or ``embed_dim`` random Fourier features of it (frequencies drawn from ``generator``;
    the linear layers draw from torch's global generator, as ``nn.Linear`` does).
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (256, 256, 256), sigma_data: float = 1.0,
                 embed_dim: int = 64, fourier_scale: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        hidden = list(hidden)
        if not hidden or min(hidden) < 1 or embed_dim < 0:
            raise ValueError(f"MLPDenoiser: need at least one hidden layer of positive width and "
                             f"embed_dim >= 0, got hidden={hidden}, embed_dim={embed_dim}")
        self.dim, self.sigma_data = dim, float(sigma_data)
        self.embed = FourierEmbedding(embed_dim, fourier_scale, generator) if embed_dim else None
        sizes = [dim + (embed_dim or 1), *hidden, dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.SiLU()] if i < len(sizes) - 2 else [])
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma, **_: object) -> torch.Tensor:
        c = edm_scalings(sigma_per_row(sigma, x), self.sigma_data)
        noise = self.embed(c.c_noise).to(x.dtype) if self.embed is not None else c.c_noise
        return c.c_skip * x + c.c_out * self.net(torch.cat([c.c_in * x, noise], dim=-1))
