"""The mixture of low-rank Gaussians (MoLRG) data model and its exact denoiser/score.

Data (Wang et al. 2024, "Diffusion models learn low-dimensional distributions via subspace clustering"):
``x₀ = U_k a + e`` with ``k ~ Cat(π)``, ``a ~ N(0, I_d)``, ``U_k: (n, d)`` orthonormal and optional
isotropic noise ``e ~ N(0, η² I_n)``. Forward process ``x_t = s x₀ + γ ε`` (VE: ``s = 1, γ = σ``).
The posterior mean and score come from ``genlowdim.core.kernels`` (log-sum-exp posterior weights,
``E[x₀|x_t] = s/(s²+γ²) Σ_k w_k U_k U_kᵀ x_t`` without sample noise; with it, core's form for
``τ² = s²η² + γ²``).
"""
from __future__ import annotations

import math

import torch

from genlowdim.core import kernels

_ORTHO_TOL = 1e-5


def random_bases(num_subspaces: int, ambient_dim: int, subspace_dim: int, *, orthogonal: bool = True,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Random orthonormal bases ``(K, n, d)``.

    ``orthogonal=True`` takes disjoint column blocks of one Haar-random orthonormal ``n × n`` basis (the
    official generator), so the K subspaces are mutually orthogonal; it needs ``K·d <= n``. Otherwise each
    subspace is an independent Haar-random d-dimensional subspace.
    """
    k, n, d = int(num_subspaces), int(ambient_dim), int(subspace_dim)
    if k < 1 or d < 1:
        raise ValueError(f"random_bases: need K >= 1 and d >= 1, got K={k}, d={d}")
    if d > n:
        raise ValueError(f"random_bases: subspace dimension d={d} exceeds ambient dimension n={n}")
    if orthogonal and k * d > n:
        raise ValueError(f"random_bases: K·d = {k}·{d} = {k * d} > n = {n}; mutually orthogonal "
                         f"subspaces do not fit (use orthogonal=False or a larger n)")
    if orthogonal:
        g = torch.randn(n, n, generator=generator, dtype=dtype, device=device)
        q = _haar_q(g)
        return q[:, : k * d].reshape(n, k, d).permute(1, 0, 2).contiguous()
    g = torch.randn(k, n, d, generator=generator, dtype=dtype, device=device)
    return torch.stack([_haar_q(m) for m in g])


def _haar_q(m: torch.Tensor) -> torch.Tensor:
    """Q factor of a Gaussian matrix with the sign fix that makes it Haar distributed."""
    q, r = torch.linalg.qr(m)
    signs = torch.sign(torch.diagonal(r))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return q * signs


def check_bases(bases: torch.Tensor, where: str = "bases", tol: float = _ORTHO_TOL) -> torch.Tensor:
    """Validate ``bases: (K, n, d)`` with orthonormal columns per subspace; returns it unchanged."""
    if not isinstance(bases, torch.Tensor) or bases.dim() != 3:
        shape = tuple(bases.shape) if isinstance(bases, torch.Tensor) else type(bases).__name__
        raise ValueError(f"{where}: expected a tensor of shape (K, n, d), got {shape}")
    _, n, d = bases.shape
    if d > n:
        raise ValueError(f"{where}: subspace dimension d={d} exceeds ambient dimension n={n}")
    gram = bases.transpose(1, 2) @ bases
    eye = torch.eye(d, dtype=bases.dtype, device=bases.device)
    worst = (gram - eye).abs().amax(dim=(1, 2))
    scale = tol if bases.dtype == torch.float64 else max(tol, 1e-4)
    if bool((worst > scale).any()):
        k = int(worst.argmax())
        raise ValueError(f"{where}[{k}]: columns are not orthonormal (max |UᵀU - I| = {float(worst[k]):.2e})")
    return bases


class LowRankMixture:
    """Mixture of K low-rank Gaussians in R^n.

    Args:
        bases: (K, n, d) orthonormal bases U_k.
        weights: (K,) mixing weights π (default uniform); must be positive and sum to 1.
        noise_std: η >= 0, std of the isotropic noise added to each sample.
    """

    def __init__(self, bases: torch.Tensor, weights: torch.Tensor | None = None, noise_std: float = 0.0):
        self.bases = check_bases(bases)
        k = bases.shape[0]
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=bases.dtype, device=bases.device)
        weights = torch.as_tensor(weights, dtype=bases.dtype, device=bases.device)
        if weights.shape != (k,):
            raise ValueError(f"weights: expected shape ({k},), got {tuple(weights.shape)}")
        if bool((weights <= 0).any()) or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights: must be positive and sum to 1, got {weights.tolist()}")
        if not math.isfinite(float(noise_std)) or noise_std < 0:
            raise ValueError(f"noise_std: must be a finite number >= 0, got {noise_std}")
        self.weights = weights
        self.log_weights = weights.log()
        self.noise_std = float(noise_std)

    @property
    def num_subspaces(self) -> int:
        return self.bases.shape[0]

    @property
    def ambient_dim(self) -> int:
        return self.bases.shape[1]

    @property
    def subspace_dim(self) -> int:
        return self.bases.shape[2]

    def sample(self, num: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """Draw ``num`` points ``(num, n)`` (and labels ``(num,)`` when ``return_labels``)."""
        if int(num) < 0:
            raise ValueError(f"sample: num must be >= 0, got {num}")
        labels = torch.multinomial(self.weights, int(num), replacement=True, generator=generator)
        coeffs = torch.randn(int(num), self.subspace_dim, generator=generator, dtype=self.bases.dtype,
                             device=self.bases.device)
        x = torch.einsum("bnd,bd->bn", self.bases[labels], coeffs)
        if self.noise_std > 0:
            x = x + self.noise_std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (x, labels) if return_labels else x

    def denoise_vp(self, x: torch.Tensor, s, gamma) -> torch.Tensor:
        """Exact ``E[x₀ | x_t]`` for ``x_t = s x₀ + γ ε``; x: (B, n), s and γ scalars or (B,)."""
        return kernels.molrg_denoise(x, self.bases.to(x.dtype), self.log_weights.to(x.dtype), gamma, s=s,
                                     noise_var=self.noise_std ** 2)

    def score_vp(self, x: torch.Tensor, s, gamma) -> torch.Tensor:
        """Exact ``∇ log p_t(x_t)`` for ``x_t = s x₀ + γ ε``; x: (B, n) -> (B, n)."""
        return kernels.molrg_score(x, self.bases.to(x.dtype), self.log_weights.to(x.dtype), gamma, s=s,
                                   noise_var=self.noise_std ** 2)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """VE posterior mean ``E[x₀ | x₀ + σ ε = x]``; x: (B, n), σ scalar or (B,). Denoiser contract."""
        return self.denoise_vp(x, 1.0, sigma)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """VE score ``∇ log p_σ(x) = (E[x₀|x] - x) / σ²``; x: (B, n)."""
        return self.score_vp(x, 1.0, sigma)

    def posterior_weights(self, x: torch.Tensor, sigma, s=1.0) -> torch.Tensor:
        """Posterior component probabilities ``w_k(x_t)`` (B, K)."""
        return kernels.molrg_posterior_weights(x, self.bases.to(x.dtype), self.log_weights.to(x.dtype), sigma,
                                               s=s, noise_var=self.noise_std ** 2)

    def __call__(self, x: torch.Tensor, sigma, **_: object) -> torch.Tensor:
        return self.denoise(x, sigma)

