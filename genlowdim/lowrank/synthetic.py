"""Synthetic MoLRG training sets with an exact number of samples per subspace."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .mixture import LowRankMixture, random_bases


@dataclass(frozen=True)
class SyntheticSet:
    """A ground-truth mixture and a training set drawn from it.

    ``x: (K·N_k, n)`` training points, ``labels: (K·N_k,)`` their true subspace, ``mixture.bases: (K, n, d)``.
    """

    mixture: LowRankMixture
    x: torch.Tensor
    labels: torch.Tensor

    @property
    def bases(self) -> torch.Tensor:
        return self.mixture.bases


def balanced_sample(mixture: LowRankMixture, per_subspace: int,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly ``per_subspace`` points from each component: ``x₀ = U_k a + e``; returns (x, labels).

    The rows are shuffled so that the order carries no label information.
    """
    if per_subspace < 1:
        raise ValueError(f"balanced_sample: per_subspace must be >= 1, got {per_subspace}")
    k, n, d = mixture.bases.shape
    labels = torch.arange(k, device=mixture.bases.device).repeat_interleave(per_subspace)
    coeffs = torch.randn(labels.shape[0], d, generator=generator, dtype=mixture.bases.dtype,
                         device=mixture.bases.device)
    x = torch.einsum("bnd,bd->bn", mixture.bases[labels], coeffs)
    if mixture.noise_std > 0:
        x = x + mixture.noise_std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    order = torch.randperm(labels.shape[0], generator=generator, device=labels.device)
    return x[order], labels[order]


def make_synthetic(num_subspaces: int, ambient_dim: int, subspace_dim: int, per_subspace: int, *,
                   noise_std: float = 0.0, orthogonal: bool = True, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float64) -> SyntheticSet:
    """Random bases (``random_bases``) + a balanced training set of ``per_subspace`` points each."""
    bases = random_bases(num_subspaces, ambient_dim, subspace_dim, orthogonal=orthogonal,
                         generator=generator, dtype=dtype)
    mixture = LowRankMixture(bases, noise_std=noise_std)
    x, labels = balanced_sample(mixture, per_subspace, generator)
    return SyntheticSet(mixture=mixture, x=x, labels=labels)
