"""Distribution metrics on plain point clouds ``x: (N, D)``, ``y: (M, D)``.

Every function returns a plain dict ``{"name", "value", ...parameters}`` so that a JSON dump shows what
was measured and how (sample sizes, bandwidths, k, solver). Pairwise distances are computed with
``torch.cdist`` in row chunks (``pairwise_blocks``, the one chunked loop of the metrics package, also
behind ``metrics.coverage``), so memory stays ``O(chunk * M)``.

- ``wasserstein1``: exact W1 with Euclidean ground cost by the network simplex (POT ``ot.emd2``),
  uniform weights, equal or unequal sizes; 1-D inputs use SciPy's exact sorted-CDF formula.
- ``mmd``: unbiased estimator of MMD² (Gretton et al. 2012, Lemma 6) with a sum of Gaussian kernels.
- ``knn_precision_recall``: improved precision/recall (Kynkäänniemi et al. 2019, eq. 1-2).
- ``density_coverage``: density and coverage (Naeem et al. 2020, eq. 3-4).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

DEFAULT_CHUNK = 2048
MAX_OT_POINTS = 10_000


def _as_points(x, name: str) -> torch.Tensor:
    """Return ``x`` as a float64 ``(N, D)`` tensor; 1-D input becomes ``(N, 1)``."""
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().to("cpu", torch.float64)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"{name}: expected points of shape (N, D) or (N,), got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: empty point set")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return t


def _check_pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dimension {x.shape[1]} but y has {y.shape[1]}")
    return x, y


def pairwise_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(N, M)`` computed directly (not via ‖x‖²+‖y‖²−2xy, whose cancellation
    gives non-zero self-distances and makes ball-membership tests unreliable)."""
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def pairwise_blocks(x: torch.Tensor, y: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> Iterator[tuple[int, torch.Tensor]]:
    """The distance matrix of ``x (N, D)`` and ``y (M, D)`` in row blocks: ``(start, d)`` with
    ``d = pairwise_distances(x[start:start + chunk], y)`` of shape ``(≤ chunk, M)`` (memory O(chunk · M))."""
    for start in range(0, len(x), chunk):
        yield start, pairwise_distances(x[start:start + chunk], y)


def nearest_neighbour_distances(x: torch.Tensor, y: torch.Tensor,
                                chunk: int = DEFAULT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """``(min_j ||x_i − y_j|| for each i: (N,), min_i ||x_i − y_j|| for each j: (M,))``, one chunked pass."""
    x_min = torch.empty(len(x), dtype=x.dtype, device=x.device)
    y_min = torch.full((len(y),), float("inf"), dtype=y.dtype, device=y.device)
    for start, d in pairwise_blocks(x, y, chunk):
        x_min[start:start + len(d)] = d.min(dim=1).values
        y_min = torch.minimum(y_min, d.min(dim=0).values)
    return x_min, y_min


def chunked_min_dist(x: torch.Tensor, y: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Distance from each row of ``x (N, D)`` to its nearest row of ``y (M, D)``: ``(N,)``."""
    return torch.cat([d.min(dim=1).values for _, d in pairwise_blocks(x, y, chunk)])


def knn_radii(x: torch.Tensor, k: int, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Distance of each point of ``x (N, D)`` to its k-th nearest neighbour in ``x`` (self excluded)."""
    if not 1 <= k < len(x):
        raise ValueError(f"k must satisfy 1 <= k < number of points ({len(x)}), got k={k}")
    # k + 1: the point itself is at distance 0
    return torch.cat([d.kthvalue(k + 1, dim=1).values for _, d in pairwise_blocks(x, x, chunk)])


def _count_in_balls(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor,
                    chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """For each point ``(N, D)``: how many balls ``B(centres_i, radii_i)`` contain it: ``(N,)``."""
    return torch.cat([(d <= radii[None, :]).sum(dim=1) for _, d in pairwise_blocks(points, centres, chunk)])


def wasserstein1(x, y, *, num_iter_max: int = 10_000_000) -> dict:
    """Exact Wasserstein-1 distance between the empirical measures of ``x (N, D)`` and ``y (M, D)``.

    W1 = min_γ Σ_ij γ_ij ‖x_i − y_j‖ over couplings of uniform weights (1/N, 1/M). D = 1 uses
    ``scipy.stats.wasserstein_distance`` (exact for 1-D); otherwise POT's network simplex ``ot.emd2``.
    Cost is O(N·M) memory, so N, M ≤ ``MAX_OT_POINTS``.
    """
    x, y = _check_pair(x, y)
    params = {"n_x": len(x), "n_y": len(y), "dim": x.shape[1], "ground_cost": "euclidean"}
    if x.shape[1] == 1:
        from scipy.stats import wasserstein_distance

        value = float(wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy()))
        return {"name": "wasserstein1", "value": value, "method": "scipy.stats.wasserstein_distance (1-D)",
                **params}
    if max(len(x), len(y)) > MAX_OT_POINTS:
        raise ValueError(f"wasserstein1: exact OT limited to {MAX_OT_POINTS} points per set, got "
                         f"{len(x)} and {len(y)}; subsample with a seeded generator first")
    import ot

    cost = pairwise_distances(x, y).numpy()
    a = np.full(len(x), 1.0 / len(x))
    b = np.full(len(y), 1.0 / len(y))
    value, log = ot.emd2(a, b, cost, numItermax=num_iter_max, log=True)
    if log.get("warning"):
        raise RuntimeError(f"wasserstein1: OT solver did not converge: {log['warning']}")
    return {"name": "wasserstein1", "value": float(value), "method": "exact OT (POT ot.emd2)", **params}


def median_heuristic(x: torch.Tensor, y: torch.Tensor, max_points: int = 1000) -> float:
    """Median pairwise distance of the pooled sample (the first ``max_points`` of each set)."""
    z = torch.cat([x[:max_points], y[:max_points]])
    d = pairwise_distances(z, z)
    iu = torch.triu_indices(len(z), len(z), offset=1)
    return float(d[iu[0], iu[1]].median())


def _kernel_mean(a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float], exclude_diag: bool,
                 chunk: int = DEFAULT_CHUNK) -> float:
    """Mean of Σ_h exp(−‖a_i − b_j‖² / (2h²)) over pairs (i ≠ j when ``exclude_diag``)."""
    total = 0.0
    for i, d in pairwise_blocks(a, b, chunk):
        d2 = d.square()
        k = sum(torch.exp(-d2 / (2.0 * h * h)) for h in bandwidths)
        if exclude_diag:
            rows = torch.arange(i, min(i + chunk, len(a)))
            k[rows - i, rows] = 0.0
        total += float(k.sum())
    pairs = len(a) * (len(b) - 1) if exclude_diag else len(a) * len(b)
    return total / pairs


def mmd(x, y, bandwidths: Sequence[float] | None = None) -> dict:
    """Unbiased MMD² between ``x (N, D)`` and ``y (M, D)`` with k = Σ_h exp(−‖a−b‖²/(2h²)).

    MMD²_u = mean_{i≠i'} k(x_i,x_i') + mean_{j≠j'} k(y_j,y_j') − 2 mean_{i,j} k(x_i,y_j)
    (Gretton et al. 2012, eq. 3). It can be slightly negative when the distributions agree.
    ``bandwidths=None`` uses the median heuristic (one bandwidth = median pooled pairwise distance).
    """
    x, y = _check_pair(x, y)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("mmd: need at least two points in each set")
    if bandwidths is None:
        bandwidths, rule = [median_heuristic(x, y)], "median heuristic"
    else:
        bandwidths, rule = [float(h) for h in bandwidths], "given"
        if not bandwidths or min(bandwidths) <= 0:
            raise ValueError(f"mmd: bandwidths must be positive, got {bandwidths}")
    value = (_kernel_mean(x, x, bandwidths, True) + _kernel_mean(y, y, bandwidths, True)
             - 2.0 * _kernel_mean(x, y, bandwidths, False))
    return {"name": "mmd2_unbiased", "value": value, "kernel": "gaussian", "bandwidths": bandwidths,
            "bandwidth_rule": rule, "n_x": len(x), "n_y": len(y)}


def knn_precision_recall(real, fake, k: int = 5) -> dict:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    precision = fraction of fake points inside ∪_i B(real_i, r_k(real_i)); recall = fraction of real
    points inside ∪_j B(fake_j, r_k(fake_j)), where r_k is the distance to the k-th nearest neighbour
    within the same set. ``value`` is ``{"precision": p, "recall": r}``.
    """
    real, fake = _check_pair(real, fake)
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    precision = float((_count_in_balls(fake, real, r_real) > 0).double().mean())
    recall = float((_count_in_balls(real, fake, r_fake) > 0).double().mean())
    return {"name": "knn_precision_recall", "value": {"precision": precision, "recall": recall},
            "k": k, "n_real": len(real), "n_fake": len(fake)}


def density_coverage(real, fake, k: int = 5) -> dict:
    """Density and coverage (Naeem et al. 2020).

    density = 1/(k·M) Σ_j Σ_i 1[fake_j ∈ B(real_i, r_k(real_i))] (can exceed 1);
    coverage = 1/N Σ_i 1[min_j ‖real_i − fake_j‖ ≤ r_k(real_i)].
    """
    real, fake = _check_pair(real, fake)
    r_real = knn_radii(real, k)
    density = float(_count_in_balls(fake, real, r_real).double().sum()) / (k * len(fake))
    coverage = float((chunked_min_dist(real, fake) <= r_real).double().mean())
    return {"name": "density_coverage", "value": {"density": density, "coverage": coverage},
            "k": k, "n_real": len(real), "n_fake": len(fake)}
