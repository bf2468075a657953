"""The low-dimensional structure of a trained CDVAE, measured with the tools of the MoLRG study.

Q1 (latent union of subspaces): the posterior means μ of a dataset's crystals, their intrinsic dimension
(PCA spectrum, TwoNN, Levina–Bickel MLE), a union-of-subspaces fit with the solver of the low-rank family
(spectral clustering of ``|Ẑ Ẑᵀ|^p`` on a seeded subsample, per-cluster PCA, K-subspaces on all points; Ẑ =
centred μ scaled to unit norm) and how its clusters align with the crystals' labels, against K-means and a
Gaussian mixture on the same (centred) latents.
Q2 (low-rank denoising): :mod:`genlowdim.crystal.analysis.jacobians`. Q4 (editing):
:mod:`genlowdim.crystal.analysis.editing`.
Q3 (memorisation): :mod:`genlowdim.crystal.analysis.memorisation`. Figures: :mod:`genlowdim.crystal.analysis.plots`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genlowdim.core.subspaces import (SubspaceFit, assign_to_subspaces, fit_bases, k_subspaces, spectral_labels,
                                      subspace_objective)
from genlowdim.metrics.subspace import (clustering_accuracy, clustering_nmi, mle_dimension, pca_dimension,
                                        pca_spectrum, twonn_dimension)


@dataclass(frozen=True)
class LatentSettings:
    """Settings of the latent analysis. ``spectral_points``: subsample size of the spectral step (its affinity
    is dense); ``subspace_energy``: energy fraction that defines a cluster's dimension; ``min_class_share``:
    label classes below this share of the labelled crystals are left out of the alignment scores;
    ``id_points``: subsample of the nearest-neighbour estimators."""
    spectral_points: int = 3000
    affinity_power: float = 8.0
    subspace_energy: float = 0.95
    refine_iters: int = 30
    num_clusters: int | None = None     # None: the eigengap of the spectral affinity decides (2..12)
    min_class_share: float = 0.02
    id_points: int = 5000
    mle_neighbours: int = 10
    seed: int = 0


def _subsample(n: int, size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:size] if n > size else torch.arange(n)


def centred_unit_rows(z: torch.Tensor, mean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(centred z, centred z scaled to unit rows); z: (N, latent), centred on ``mean`` (default: its own)."""
    zc = z.double() - (z.double().mean(0) if mean is None else mean.double())
    return zc, zc / zc.norm(dim=1, keepdim=True).clamp_min(1e-12)


def intrinsic_dimension(z: torch.Tensor, s: LatentSettings) -> dict:
    """PCA dimensions at 90/95/99 % variance, the spectrum, TwoNN and MLE estimates of z: (N, latent)."""
    sub = z[_subsample(z.shape[0], s.id_points, s.seed)].double()
    spectrum = pca_spectrum(z)
    return {"ambient_dim": int(z.shape[1]), "num_points": int(z.shape[0]),
            "pca_90": pca_dimension(z, 0.90), "pca_95": pca_dimension(z, 0.95), "pca_99": pca_dimension(z, 0.99),
            "pca_variance_fraction": spectrum.tolist(),
            "twonn": twonn_dimension(sub), "mle": mle_dimension(sub, s.mle_neighbours),
            "params": {"nn_points": int(sub.shape[0]), "mle_neighbours": s.mle_neighbours,
                       "twonn_discard": 0.1, "seed": s.seed}}


def eigengap_clusters(zn: torch.Tensor, power: float, k_max: int = 12) -> int:
    """Number of clusters by the largest gap among the leading eigenvalues of the normalised affinity
    ``D^{-1/2} |Ẑ Ẑᵀ|^p D^{-1/2}`` (von Luxburg 2007), searched in 2..k_max."""
    a = (zn @ zn.T).abs().pow(power)
    d = a.sum(1).clamp_min(1e-12).rsqrt()
    ev = torch.linalg.eigvalsh(d[:, None] * a * d[None, :]).flip(0)[: k_max + 1]
    gaps = ev[1:k_max] - ev[2:k_max + 1]        # gap after the k-th eigenvalue, k = 2..k_max
    return int(gaps.argmax()) + 2


def cluster_dimension(x: torch.Tensor, energy: float) -> int:
    """Fewest directions through the origin that hold ``energy`` of the rows' squared norm; x: (M, n)."""
    if x.shape[0] == 0:
        return 0
    s2 = torch.linalg.svdvals(x.double()).pow(2)
    return int((s2.cumsum(0) < energy * s2.sum() - 1e-12).sum()) + 1


def fit_union(zn: torch.Tensor, k: int, s: LatentSettings) -> tuple[SubspaceFit, int]:
    """Spectral labels on a subsample, a common dimension d (median cluster dimension at
    ``subspace_energy``), per-cluster PCA, then K-subspaces on every row of zn: (N, latent)."""
    idx = _subsample(zn.shape[0], s.spectral_points, s.seed)
    labels = spectral_labels(zn[idx], k, seed=s.seed, power=s.affinity_power)
    dims = [cluster_dimension(zn[idx][labels == c], s.subspace_energy) for c in range(k)]
    d = max(1, min(int(np.median(dims)), zn.shape[1] // max(1, k) if k * 2 <= zn.shape[1] else zn.shape[1]))
    gen = torch.Generator().manual_seed(s.seed)
    bases = fit_bases(zn[idx], labels, k, d, gen)
    return k_subspaces(zn, bases, iters=s.refine_iters, generator=gen), d


def explained_by_dimension(zn: torch.Tensor, labels: torch.Tensor, dims, s: LatentSettings) -> dict:
    """Fraction of the squared norm of zn: (N, n) kept by K-subspaces of each dimension in ``dims``
    (started from the given cluster ``labels``) and by one PCA subspace of the same dimension."""
    k = int(labels.max()) + 1
    gen = torch.Generator().manual_seed(s.seed)
    u_all = torch.linalg.svd(zn, full_matrices=False)[2].T
    rows = []
    for d in dims:
        fit = k_subspaces(zn, fit_bases(zn, labels, k, d, gen), iters=s.refine_iters, generator=gen)
        single = float(zn.matmul(u_all[:, :d]).pow(2).sum() / zn.pow(2).sum())
        rows.append({"dim": int(d), "union": fit.objective, "single": single})
    return {"num_clusters": k, "rows": rows}


def union_of_subspaces(z: torch.Tensor, s: LatentSettings) -> dict:
    """Q1's fit on all latents: K (eigengap or given), common d, per-cluster dimensions, variance explained by
    the union against one PCA subspace of dimension d and of dimension K·d. Returns data plus the fit."""
    zc, zn = centred_unit_rows(z)
    k = s.num_clusters or eigengap_clusters(zn[_subsample(zn.shape[0], s.spectral_points, s.seed)],
                                            s.affinity_power)
    fit, d = fit_union(zn, k, s)
    dims = [cluster_dimension(zn[fit.labels == c], s.subspace_energy) for c in range(k)]
    sizes = [int((fit.labels == c).sum()) for c in range(k)]
    u_all = torch.linalg.svd(zc, full_matrices=False)[2].T
    single = lambda m: float(zc.matmul(u_all[:, :m]).pow(2).sum() / zc.pow(2).sum())  # noqa: E731
    grid = sorted({int(v) for v in np.linspace(1, min(z.shape[1], d + 8), 12).round()})
    return {"num_clusters": k, "common_dim": d, "cluster_dims": dims, "cluster_sizes": sizes,
            "explained_by_dimension": explained_by_dimension(zn, fit.labels, grid, s)["rows"],
            "explained_union": subspace_objective(zc, fit.bases),
            "explained_union_unit_rows": fit.objective,
            "explained_single_pca_d": single(d), "explained_single_pca_Kd": single(min(k * d, z.shape[1])),
            "params": {"subspace_energy": s.subspace_energy, "affinity_power": s.affinity_power,
                       "spectral_points": min(s.spectral_points, int(z.shape[0])), "refine_iters": s.refine_iters,
                       "num_clusters": "eigengap" if s.num_clusters is None else s.num_clusters, "seed": s.seed},
            "_fit": fit}


def _scores(pred, truth) -> dict:
    return {"accuracy": clustering_accuracy(pred, truth), "nmi": clustering_nmi(pred, truth)}


def baseline_labels(zc: np.ndarray, k: int, seed: int) -> dict[str, np.ndarray]:
    """K-means (10 restarts) and a full-covariance Gaussian mixture on the centred latents (N, latent)."""
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    return {"kmeans": KMeans(k, n_init=10, random_state=seed).fit_predict(zc),
            "gmm": GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(zc).predict(zc)}


def label_alignment(z: torch.Tensor, labels, s: LatentSettings) -> dict:
    """Per label of ``labels`` (:class:`~genlowdim.crystal.analysis.labels.CrystalLabels`): accuracy and NMI of the
    union-of-subspaces clusters and of the baselines, all with K = number of classes above
    ``min_class_share``, on the crystals of those classes."""
    out = {}
    for name, lab in labels.labels.items():
        counts = np.bincount(lab[lab >= 0]) if (lab >= 0).any() else np.zeros(0, int)
        keep_classes = np.flatnonzero(counts >= s.min_class_share * counts.sum())
        mask = np.isin(lab, keep_classes)
        k = len(keep_classes)
        if k < 2:
            out[name] = {"skipped": f"{k} class(es) above {s.min_class_share:.0%} of the labelled crystals"}
            continue
        zc, zn = centred_unit_rows(z[torch.as_tensor(mask)])
        truth = lab[mask]
        fit, d = fit_union(zn, k, s)
        row = {"num_classes": k, "num_crystals": int(mask.sum()),
               "classes": [labels.classes[name][c] for c in keep_classes], "subspace_dim": d,
               "union_of_subspaces": _scores(fit.labels, truth)}
        for method, pred in baseline_labels(zc.numpy(), k, s.seed).items():
            row[method] = _scores(pred, truth)
        # supervised reference: per-class PCA of dimension d, each crystal to its nearest class subspace
        cls = torch.as_tensor(np.searchsorted(keep_classes, truth))
        bases = fit_bases(zn, cls, k, d, torch.Generator().manual_seed(s.seed))
        row["supervised_nearest_subspace"] = _scores(assign_to_subspaces(zn, bases), cls)
        out[name] = row
    return out
