"""Small constructions shared by the core tests (exact MoLRG and Gaussian models)."""
from __future__ import annotations

import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from genlowdim.core import expand_sigma
from genlowdim.core.kernels import molrg_denoise


def orthogonal_bases(n: int, K: int, d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """K mutually orthogonal d-dim subspaces of R^n: disjoint column blocks of one random orthonormal
    basis (as the MoLRG paper's generator does). Returns (K, n, d)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=dtype))
    return q[:, : K * d].reshape(n, K, d).permute(1, 0, 2).contiguous()


def random_bases(n: int, K: int, d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """K independent random d-dim subspaces (not mutually orthogonal). Returns (K, n, d)."""
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(K, n, d, generator=g, dtype=dtype))[0]


def molrg_dense(bases, log_weights, sigma, s=1.0, noise_var=0.0) -> MixtureSameFamily:
    """The noised MoLRG p_t as a torch.distributions mixture with dense n x n covariances."""
    K, n, _ = bases.shape
    eye = torch.eye(n, dtype=bases.dtype)
    cov = s**2 * bases @ bases.transpose(1, 2) + (s**2 * noise_var + sigma**2) * eye
    return MixtureSameFamily(Categorical(logits=log_weights), MultivariateNormal(torch.zeros(K, n, dtype=bases.dtype), cov))


def molrg_denoiser(bases, log_weights, noise_var=0.0):
    """Exact MoLRG denoiser following the core denoiser contract (VE, s = 1)."""

    def denoiser(x, sigma):
        sig = expand_sigma(sigma, x)
        return molrg_denoise(x, bases, log_weights, sig.reshape(-1) if sig.ndim else sig, noise_var=noise_var)

    return denoiser


def gaussian_denoiser(variance: float):
    """Exact denoiser of N(0, variance I): D(x, sigma) = variance / (variance + sigma²) x."""

    def denoiser(x, sigma):
        sig = expand_sigma(sigma, x)
        return variance / (variance + sig**2) * x

    return denoiser


def sample_molrg(bases, log_weights, num, generator, noise_var=0.0):
    """Draw num points x_0 = U_k a + e from the MoLRG; returns (x0 (num, n), k (num,))."""
    K, n, d = bases.shape
    k = torch.multinomial(log_weights.softmax(0), num, replacement=True, generator=generator)
    a = torch.randn(num, d, generator=generator, dtype=bases.dtype)
    x0 = torch.einsum("bnd,bd->bn", bases[k], a)
    if noise_var:
        x0 = x0 + noise_var**0.5 * torch.randn(num, n, generator=generator, dtype=bases.dtype)
    return x0, k
