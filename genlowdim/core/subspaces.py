"""Union-of-subspaces solvers on plain vectors: PCA bases, spectral clustering of ``|X Xᵀ|``, K-subspaces.

Wang et al. (2024) show that minimising the diffusion loss of the low-rank denoiser is PCA for K = 1 and,
with the hard-max, K-subspaces clustering: maximise ``Σ_i max_k ||U_kᵀ x_i||²``. We solve it by spectral
clustering of the affinity ``|X Xᵀ|`` (scikit-learn, ``affinity="precomputed"``) followed by per-cluster
PCA, optionally refined by K-subspaces (Lloyd-style) iterations. The low-rank family trains from this
solution; the crystal family fits it to encoded latents (tensors only, so both can call it).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SubspaceFit:
    """Fitted union of subspaces: ``bases: (K, n, d)`` and training labels ``(N,)``."""

    bases: torch.Tensor
    labels: torch.Tensor
    objective: float  # Σ_i max_k ||U_kᵀ x_i||² / Σ_i ||x_i||² (1 = every point on its subspace)


def pca_basis(x: torch.Tensor, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Top-``dim`` principal directions (no centring: subspaces pass through 0) of rows x: (N, n).

    When the points span fewer than ``dim`` directions (e.g. N < dim) the basis is completed with random
    orthonormal directions orthogonal to the data span — the data say nothing about them.
    Returns (n, dim) with orthonormal columns.
    """
    n = x.shape[1]
    if dim > n:
        raise ValueError(f"pca_basis: dim={dim} exceeds ambient dimension n={n}")
    if x.shape[0] == 0:
        return _complete(torch.zeros(n, 0, dtype=x.dtype, device=x.device), dim, generator)
    u, svals, _ = torch.linalg.svd(x.T, full_matrices=False)
    tol = svals.max() * max(x.shape) * torch.finfo(x.dtype).eps if svals.numel() else 0.0
    rank = int((svals > tol).sum())
    keep = u[:, : min(rank, dim)]
    return _complete(keep, dim, generator)


def _complete(basis: torch.Tensor, dim: int, generator: torch.Generator | None) -> torch.Tensor:
    """Append random orthonormal columns orthogonal to ``basis`` until it has ``dim`` columns."""
    missing = dim - basis.shape[1]
    if missing <= 0:
        return basis
    g = torch.randn(basis.shape[0], missing, generator=generator, dtype=basis.dtype).to(basis.device)
    g = g - basis @ (basis.T @ g)
    extra = torch.linalg.qr(g)[0]
    extra = extra - basis @ (basis.T @ extra)
    return torch.cat([basis, torch.linalg.qr(extra)[0]], dim=1)


def spectral_labels(x: torch.Tensor, num_clusters: int, seed: int = 0, power: float = 1.0,
                    assign_labels: str = "cluster_qr") -> torch.Tensor:
    """Spectral clustering of the affinity ``|X Xᵀ|^power``; x: (N, n) -> labels (N,) in [0, K).

    ``power`` > 1 sharpens the affinity (useful on real data where subspaces are not orthogonal).
    ``assign_labels`` is scikit-learn's: ``"cluster_qr"`` (deterministic, ~15× faster than ``"kmeans"``
    with 10 restarts on small sets) or ``"kmeans"``.
    """
    from sklearn.cluster import SpectralClustering

    n_pts = x.shape[0]
    if num_clusters < 1:
        raise ValueError(f"spectral_labels: num_clusters must be >= 1, got {num_clusters}")
    if num_clusters == 1:
        return torch.zeros(n_pts, dtype=torch.long)
    if n_pts < num_clusters:
        raise ValueError(f"spectral_labels: {n_pts} points cannot form {num_clusters} clusters")
    xd = x.detach().to(torch.float64).cpu()
    affinity = (xd @ xd.T).abs().pow(power).numpy()
    affinity += 1e-12 * np.eye(n_pts)  # isolated points keep a defined degree
    model = SpectralClustering(n_clusters=num_clusters, affinity="precomputed", random_state=seed,
                               assign_labels=assign_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "graph is not fully connected" is expected for orthogonal data
        labels = model.fit_predict(affinity)
    return torch.as_tensor(labels, dtype=torch.long)


def assign_to_subspaces(x: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """Hard assignment ``argmax_k ||U_kᵀ x||²`` (the σ → 0 limit of the posterior); x: (N, n) -> (N,)."""
    energy = torch.einsum("knd,bn->bkd", bases.to(x.dtype), x).pow(2).sum(-1)
    return energy.argmax(dim=1)


def fit_bases(x: torch.Tensor, labels: torch.Tensor, num_subspaces: int, dim: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-cluster PCA: bases (K, n, d) from points x: (N, n) and labels (N,)."""
    return torch.stack([pca_basis(x[labels == k], dim, generator) for k in range(num_subspaces)])


def subspace_objective(x: torch.Tensor, bases: torch.Tensor) -> float:
    """Normalised K-subspaces objective ``Σ_i max_k ||U_kᵀ x_i||² / Σ_i ||x_i||²`` in [0, 1]."""
    energy = torch.einsum("knd,bn->bkd", bases.to(x.dtype), x).pow(2).sum(-1)
    return float(energy.max(dim=1).values.sum() / x.pow(2).sum().clamp_min(1e-300))


def k_subspaces(x: torch.Tensor, bases: torch.Tensor, iters: int = 20,
                generator: torch.Generator | None = None) -> SubspaceFit:
    """Lloyd iterations for K-subspaces: assign by projection energy, refit by PCA, until stable."""
    labels = assign_to_subspaces(x, bases)
    for _ in range(iters):
        bases = fit_bases(x, labels, bases.shape[0], bases.shape[2], generator)
        new = assign_to_subspaces(x, bases)
        if torch.equal(new, labels):
            break
        labels = new
    return SubspaceFit(bases=bases, labels=labels, objective=subspace_objective(x, bases))


def spectral_init(x: torch.Tensor, num_subspaces: int, dim: int, *, seed: int = 0, refine_iters: int = 0,
                  power: float = 1.0, generator: torch.Generator | None = None) -> SubspaceFit:
    """Spectral clustering of ``|XXᵀ|`` + per-cluster PCA (+ optional K-subspaces refinement).

    x: (N, n) training points; returns bases (K, n, d) in x's dtype and the cluster labels.
    """
    if x.dim() != 2:
        raise ValueError(f"spectral_init: expected points of shape (N, n), got {tuple(x.shape)}")
    if dim > x.shape[1]:
        raise ValueError(f"spectral_init: subspace dimension d={dim} exceeds ambient dimension n={x.shape[1]}")
    labels = spectral_labels(x, num_subspaces, seed=seed, power=power).to(x.device)
    bases = fit_bases(x, labels, num_subspaces, dim, generator)
    if refine_iters > 0:
        return k_subspaces(x, bases, iters=refine_iters, generator=generator)
    return SubspaceFit(bases=bases, labels=labels, objective=subspace_objective(x, bases))
