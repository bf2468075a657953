"""The latent-variable model X = g(Z) + σε of Chae, Kim, Kim & Lin (JMLR 2023), and an amortised encoder.

- ``LatentGenerator``: g is an MLP from a d-dimensional latent to R^D; the prior P_Z is uniform on
  [0,1]^d or standard normal on R^d; σ = σ_floor + exp(log σ) is a learned scalar noise scale.
  The fitted estimate of the singular target Q₀ is the push-forward g#P_Z (noise-free samples); the full
  model density is p(y) = ∫ N(y; g(z), σ²I) dP_Z(z).
- Two reparameterisations of the latent are offered so that quadrature and importance sampling share one
  network: ``decode_unit(u)`` for u ∈ [0,1]^d (z = u for the uniform prior, z = Φ⁻¹(u) for the Gaussian one)
  and ``decode_base(e)`` for e ∈ R^d with e ~ N(0, I) (z = Φ(e) or z = e). In both cases the prior of the
  reparameterised variable is the same simple law (uniform on the cube, standard normal).
- ``GaussianEncoder``: amortised proposal q(e | y) = N(μ(y), diag s(y)²) in the base space, for
  importance-weighted likelihood estimates and the ELBO baseline.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

PRIORS = ("uniform", "gaussian")


def _mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _normal_icdf(u: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2.0) * torch.special.erfinv(2.0 * u - 1.0)


def _normal_cdf(e: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.special.erf(e / math.sqrt(2.0)))


class LatentGenerator(nn.Module):
    """X = g(Z) + σ ε with g: R^d → R^D an MLP.

    Args:
        latent_dim: d ≥ 1 (must not exceed ``ambient_dim``).
        ambient_dim: D.
        hidden: widths of the hidden layers of g (tanh activations).
        prior: 'uniform' (Z ~ U[0,1]^d, fed to the network as 2Z − 1) or 'gaussian' (Z ~ N(0, I_d)).
        sigma_init: initial σ (> 0). A large start smooths the early likelihood surface.
        sigma_floor: σ ≥ σ_floor (≥ 0), the optional lower bound that stops σ̂ → 0.
    """

    def __init__(self, latent_dim: int, ambient_dim: int, hidden: Sequence[int] = (64, 64),
                 prior: str = "uniform", sigma_init: float = 0.5, sigma_floor: float = 0.0):
        super().__init__()
        if latent_dim < 1 or ambient_dim < 1:
            raise ValueError(f"latent_dim and ambient_dim must be positive, got {latent_dim}, {ambient_dim}")
        if latent_dim > ambient_dim:
            raise ValueError(f"latent dimension d={latent_dim} exceeds the ambient dimension D={ambient_dim}")
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; expected one of {list(PRIORS)}")
        if sigma_floor < 0 or sigma_init <= sigma_floor:
            raise ValueError(f"need 0 <= sigma_floor < sigma_init, got floor={sigma_floor}, init={sigma_init}")
        self.latent_dim, self.ambient_dim, self.prior = latent_dim, ambient_dim, prior
        self.net = _mlp([latent_dim, *hidden, ambient_dim])
        self.register_buffer("sigma_floor", torch.tensor(float(sigma_floor)))
        self.log_sigma_free = nn.Parameter(torch.tensor(math.log(sigma_init - sigma_floor)))

    @property
    def sigma(self) -> torch.Tensor:
        """σ = σ_floor + exp(log_sigma_free): scalar tensor."""
        return self.sigma_floor + self.log_sigma_free.exp()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """g(z): ``z: (..., d)`` in the prior's own space → ``(..., D)``."""
        return self.net(2.0 * z - 1.0 if self.prior == "uniform" else z)

    def decode_unit(self, u: torch.Tensor) -> torch.Tensor:
        """g at u ∈ (0,1)^d, where u ~ U[0,1]^d reproduces P_Z: ``(..., d)`` → ``(..., D)``."""
        return self(u if self.prior == "uniform" else _normal_icdf(u))

    def decode_base(self, e: torch.Tensor) -> torch.Tensor:
        """g at e ∈ R^d, where e ~ N(0, I) reproduces P_Z: ``(..., d)`` → ``(..., D)``."""
        return self(_normal_cdf(e) if self.prior == "uniform" else e)

    def sample_latent(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` draws of Z ~ P_Z: ``(num, d)``."""
        p = next(self.parameters())
        shape = (num, self.latent_dim)
        if self.prior == "uniform":
            return torch.rand(shape, generator=generator, dtype=p.dtype, device=p.device)
        return torch.randn(shape, generator=generator, dtype=p.dtype, device=p.device)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None, with_noise: bool = False):
        """Samples of g#P_Z (``with_noise=False``, the estimate of Q₀) or of g(Z) + σε: ``(num, D)``."""
        x = self(self.sample_latent(num, generator))
        if with_noise:
            x = x + self.sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x


class GaussianEncoder(nn.Module):
    """Amortised proposal q(e | y) = N(μ(y), diag exp(2ℓ(y))) over the base latent e ∈ R^d."""

    def __init__(self, ambient_dim: int, latent_dim: int, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = _mlp([ambient_dim, *hidden, 2 * latent_dim])

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``y: (B, D)`` → mean ``(B, d)`` and log standard deviation ``(B, d)`` (clamped to [−7, 2])."""
        mean, log_std = self.net(y).chunk(2, dim=-1)
        return mean, log_std.clamp(-7.0, 2.0)

    def sample(self, y: torch.Tensor, num: int, generator: torch.Generator | None = None):
        """Reparameterised draws e: ``(B, M, d)`` and their log q(e | y): ``(B, M)``."""
        mean, log_std = self(y)
        eps = torch.randn((y.shape[0], num, self.latent_dim), generator=generator, dtype=y.dtype,
                          device=y.device)
        e = mean[:, None] + log_std.exp()[:, None] * eps
        log_q = (-0.5 * eps.square() - log_std[:, None] - 0.5 * math.log(2 * math.pi)).sum(-1)
        return e, log_q
