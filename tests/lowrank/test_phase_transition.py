"""Noiseless phase transition of subspace recovery (n = 48): success steps at N_k = d."""
from __future__ import annotations

import torch

from genlowdim.lowrank.analysis import cell_seed, fit_subspaces
from genlowdim.lowrank.clustering import k_subspaces, pca_basis, spectral_init
from genlowdim.lowrank.config import TrainConfig
from genlowdim.lowrank.synthetic import make_synthetic
from genlowdim.metrics.subspace import clustering_accuracy, subspace_error

DIMS = (2, 4, 6, 8)
NS = range(1, 13)


def test_pca_success_is_exactly_n_at_least_d():
    # K = 1: the loss minimiser is PCA of the training points; N ≥ d noiseless points span the subspace
    for d in DIMS:
        for n_pts in NS:
            gen = torch.Generator().manual_seed(cell_seed(d, n_pts, 0))
            data = make_synthetic(1, 48, d, n_pts, generator=gen)
            est = pca_basis(data.x, d, generator=gen)[None]
            assert (subspace_error(est, data.bases) < 0.2) == (n_pts >= d), (d, n_pts)


def test_spectral_solver_steps_at_n_k_equal_d():
    for d in DIMS:
        for n_pts in NS:
            for seed in range(2):
                gen = torch.Generator().manual_seed(cell_seed(d, n_pts, seed))
                data = make_synthetic(2, 48, d, n_pts, generator=gen)
                fit = spectral_init(data.x, 2, d, seed=seed, generator=gen)
                assert (subspace_error(fit.bases, data.bases) < 0.2) == (n_pts >= d), (d, n_pts, seed)
                assert clustering_accuracy(fit.labels, data.labels) == 1.0  # orthogonal: |XXᵀ| is block diagonal


def test_initialised_trained_denoiser_stays_within_threshold():
    cfg = TrainConfig(steps=60, batch_size=128, lr=3e-4)
    results = []
    for d in DIMS:
        for n_pts in (d, d + 4):
            for seed in range(2):
                data = make_synthetic(2, 48, d, n_pts, generator=torch.Generator().manual_seed(cell_seed(d, n_pts, seed)))
                est = fit_subspaces("trained", data, cfg, seed=seed)
                results.append(subspace_error(est, data.bases) < 0.2)
    assert sum(results) / len(results) >= 0.95


def test_k_subspaces_refinement_fixes_a_bad_start():
    gen = torch.Generator().manual_seed(0)
    data = make_synthetic(2, 20, 3, 30, generator=gen)
    start = torch.stack([data.bases[0], torch.linalg.qr(data.bases[0] + 0.3 * data.bases[1])[0]])
    fit = k_subspaces(data.x, start, iters=20, generator=gen)
    assert subspace_error(fit.bases, data.bases) < 1e-8
    assert fit.objective > 1 - 1e-12
