"""Subspace metrics: principal angles, projector distances after Hungarian matching, clustering accuracy.

Conventions: a subspace is given by an orthonormal basis ``U: (n, d)``; a union of K subspaces by
``bases: (K, n, d)`` (or a list of ``(n, d_k)`` tensors when the dimensions differ). The projector
distance ``||U Uᵀ - V Vᵀ||_F`` equals ``sqrt(2) * ||sin θ||_2`` over the principal angles θ when the two
dimensions agree. Subspaces are matched to the ground truth by ``scipy.optimize.linear_sum_assignment`` on
the matrix of projector distances; labels by the same routine on the confusion matrix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

Bases = torch.Tensor | Sequence[torch.Tensor]


@dataclass(frozen=True)
class SubspaceRecovery:
    """Result of comparing estimated subspaces with the true ones (after matching).

    ``errors[k]`` is ``||P̂_{m(k)} - P*_k||_F`` for true subspace k and its matched estimate ``m(k)``;
    ``max_angles[k]`` the largest principal angle in radians.
    """

    name: str
    subspace_error: float
    max_principal_angle: float
    errors: list[float]
    max_angles: list[float]
    matching: list[int]
    params: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, "subspace_error": self.subspace_error,
                "max_principal_angle": self.max_principal_angle, "errors": self.errors,
                "max_angles": self.max_angles, "matching": self.matching, "params": self.params}


def _as_list(bases: Bases, what: str) -> list[torch.Tensor]:
    items = list(bases.unbind(0)) if isinstance(bases, torch.Tensor) and bases.dim() == 3 else list(bases)
    if isinstance(bases, torch.Tensor) and bases.dim() != 3:
        raise ValueError(f"{what}: expected bases of shape (K, n, d), got {tuple(bases.shape)}")
    for k, u in enumerate(items):
        if u.dim() != 2:
            raise ValueError(f"{what}[{k}]: expected a basis of shape (n, d), got {tuple(u.shape)}")
    return [u.to(torch.float64) for u in items]


def principal_angles(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between span(u) and span(v); u: (n, d1), v: (n, d2).

    Both are orthonormalised first (QR), so any full-column-rank bases are accepted. Returns
    ``min(d1, d2)`` angles. Small angles are computed from the sines (Björck–Golub) for accuracy.
    """
    if u.shape[0] != v.shape[0]:
        raise ValueError(f"principal_angles: ambient dimensions differ ({u.shape[0]} vs {v.shape[0]})")
    qu = torch.linalg.qr(u.to(torch.float64))[0]
    qv = torch.linalg.qr(v.to(torch.float64))[0]
    if qu.shape[1] < qv.shape[1]:
        qu, qv = qv, qu
    cosines = torch.linalg.svdvals(qu.T @ qv).clamp(0.0, 1.0)
    residual = qv - qu @ (qu.T @ qv)
    sines = torch.linalg.svdvals(residual).clamp(0.0, 1.0).flip(0)
    return torch.where(cosines > 0.7, torch.arcsin(sines), torch.arccos(cosines))


def projector_distance(u: torch.Tensor, v: torch.Tensor) -> float:
    """``||u uᵀ - v vᵀ||_F`` for orthonormal bases u: (n, d1), v: (n, d2) (no n×n matrix formed)."""
    u = u.to(torch.float64)
    v = v.to(torch.float64)
    # d1 + d2 - 2||uᵀv||² written as two residual norms, accurate when the subspaces nearly agree
    sq = (v - u @ (u.T @ v)).pow(2).sum() + (u - v @ (v.T @ u)).pow(2).sum()
    return float(sq.sqrt())


def match_subspaces(estimated: Bases, truth: Bases) -> tuple[list[int], np.ndarray]:
    """Hungarian matching of estimated to true subspaces minimising the total projector distance.

    Returns ``(matching, distances)`` with ``matching[k]`` the index of the estimate paired with true
    subspace k and ``distances: (K_true, K_est)``. Needs ``K_est >= K_true``.
    """
    est, tru = _as_list(estimated, "estimated"), _as_list(truth, "truth")
    if len(est) < len(tru):
        raise ValueError(f"match_subspaces: {len(est)} estimated subspaces for {len(tru)} true ones")
    dist = np.array([[projector_distance(e, t) for e in est] for t in tru])
    rows, cols = linear_sum_assignment(dist)
    matching = [0] * len(tru)
    for r, c in zip(rows, cols):
        matching[int(r)] = int(c)
    return matching, dist


def subspace_recovery(estimated: Bases, truth: Bases) -> SubspaceRecovery:
    """Match estimates to the truth and report the largest projector distance and principal angle."""
    matching, dist = match_subspaces(estimated, truth)
    est, tru = _as_list(estimated, "estimated"), _as_list(truth, "truth")
    errors = [float(dist[k, m]) for k, m in enumerate(matching)]
    angles = [float(principal_angles(est[m], tru[k]).max()) for k, m in enumerate(matching)]
    return SubspaceRecovery(
        name="subspace_recovery", subspace_error=max(errors), max_principal_angle=max(angles),
        errors=errors, max_angles=angles, matching=matching,
        params={"num_true": len(tru), "num_estimated": len(est), "distance": "projector_frobenius",
                "angle_unit": "radian"})


def subspace_error(estimated: Bases, truth: Bases) -> float:
    """Largest ``||P̂_k - P*_k||_F`` over true subspaces after Hungarian matching."""
    return subspace_recovery(estimated, truth).subspace_error


def recovery_success(estimated: Bases, truth: Bases, threshold: float = 0.2) -> bool:
    """The paper's success criterion: ``||P̂_k - P*_k||_F < threshold`` for every k."""
    return subspace_error(estimated, truth) < threshold


def clustering_accuracy(predicted, truth) -> float:
    """Fraction of points correctly labelled after the best one-to-one relabelling (Hungarian).

    predicted, truth: integer labels of shape (N,) (tensors or arrays); label sets may differ in size.
    """
    pred = np.asarray(torch.as_tensor(predicted).cpu()).astype(np.int64).ravel()
    true = np.asarray(torch.as_tensor(truth).cpu()).astype(np.int64).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"clustering_accuracy: {pred.shape[0]} predictions for {true.shape[0]} labels")
    if pred.size == 0:
        raise ValueError("clustering_accuracy: no points")
    p_ids, p_idx = np.unique(pred, return_inverse=True)
    t_ids, t_idx = np.unique(true, return_inverse=True)
    confusion = np.zeros((len(p_ids), len(t_ids)), dtype=np.int64)
    np.add.at(confusion, (p_idx, t_idx), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return float(confusion[rows, cols].sum() / pred.size)


def distance_to_union(x: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each row of x: (B, n) to the union of span(bases[k]); bases: (K, n, d).

    Returns (B,). Uses ``||x||² - ||U_kᵀ x||²`` (orthonormal bases), never an n×n projector.
    """
    coeffs = torch.einsum("knd,bn->bkd", bases.to(x.dtype), x)
    resid = x.pow(2).sum(-1, keepdim=True) - coeffs.pow(2).sum(-1)
    return resid.clamp_min(0.0).min(dim=1).values.sqrt()


def clustering_nmi(predicted, truth) -> float:
    """Normalised mutual information (arithmetic mean normalisation, scikit-learn's default) of two
    labellings of shape (N,); invariant to relabelling, 1 for identical partitions."""
    from sklearn.metrics import normalized_mutual_info_score

    pred = np.asarray(torch.as_tensor(predicted).cpu()).astype(np.int64).ravel()
    true = np.asarray(torch.as_tensor(truth).cpu()).astype(np.int64).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"clustering_nmi: {pred.shape[0]} predictions for {true.shape[0]} labels")
    return float(normalized_mutual_info_score(true, pred))


# ------------------------------------------------------------------------- intrinsic dimension


def pca_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Fraction of variance per principal direction of the centred rows of x: (N, n); (min(N, n),), descending."""
    xc = x.to(torch.float64) - x.to(torch.float64).mean(0)
    s2 = torch.linalg.svdvals(xc).pow(2)
    return s2 / s2.sum().clamp_min(1e-300)


def pca_dimension(x: torch.Tensor, variance: float = 0.95) -> int:
    """Fewest principal directions of x: (N, n) that explain at least ``variance`` of the centred variance."""
    cum = pca_spectrum(x).cumsum(0)
    return int((cum < variance - 1e-12).sum()) + 1


def _neighbour_distances(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distances to the k nearest other rows of x: (N, n) -> (N, k), ascending (exact, chunked cdist)."""
    x = x.to(torch.float64)
    out = []
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i:i + chunk], x)
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")
        out.append(d.topk(k, dim=1, largest=False).values)
    return torch.cat(out)


def twonn_dimension(x: torch.Tensor, discard: float = 0.1) -> float:
    """TwoNN estimate (Facco et al. 2017, Sci. Rep. 7:12140) of the intrinsic dimension of rows x: (N, n).

    μ_i = r₂/r₁ (second over first neighbour distance) is Pareto(d); the estimate is the slope through the
    origin of −log(1 − F(μ)) against log μ, with the largest ``discard`` fraction of μ left out (as the
    paper does). Duplicated points (r₁ = 0) are dropped."""
    r = _neighbour_distances(x, 2)
    keep = r[:, 0] > 0
    mu = (r[keep, 1] / r[keep, 0]).sort().values
    n = mu.numel()
    if n < 3:
        raise ValueError(f"twonn_dimension: {n} usable points; need at least 3 distinct points")
    m = max(2, int(n * (1.0 - discard)))
    logmu = mu[:m].log()
    f = torch.arange(1, m + 1, dtype=torch.float64) / n
    y = -torch.log1p(-f)
    return float((logmu * y).sum() / logmu.pow(2).sum().clamp_min(1e-300))


def mle_dimension(x: torch.Tensor, k: int = 10) -> float:
    """Levina–Bickel (NeurIPS 2004) maximum-likelihood intrinsic dimension of rows x: (N, n), with MacKay and
    Ghahramani's pooling: the inverse of the mean over points of ``(1/(k−2)) Σ_{j<k} log(r_k / r_j)``
    (the unbiased normalisation)."""
    if k < 3:
        raise ValueError(f"mle_dimension: k must be at least 3, got {k}")
    r = _neighbour_distances(x, k)
    r = r[r[:, 0] > 0]
    inv = torch.log(r[:, -1:] / r[:, :-1]).sum(1) / (k - 2)   # unbiased: k−2 in the denominator
    return float(1.0 / inv.mean())
