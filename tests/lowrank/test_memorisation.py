"""Memorisation vs generalisation: empirical optimal denoiser copies, the exact MoLRG denoiser does not."""
from __future__ import annotations

import torch

from genlowdim.lowrank.analysis import memorisation_stats, sample_with
from genlowdim.lowrank.model import EmpiricalDenoiser
from genlowdim.lowrank.synthetic import make_synthetic


def test_empirical_denoiser_reproduces_training_points_and_exact_one_generalises():
    gen = torch.Generator().manual_seed(0)
    data = make_synthetic(2, 8, 2, 6, generator=gen)
    train = data.x.float()
    kw = dict(sampler="heun", steps=40, sigma_min=0.002, sigma_max=20.0, generator=gen)
    copies = sample_with(EmpiricalDenoiser(train), 300, 8, **kw)
    stats = memorisation_stats(copies, train, data.bases)
    assert stats["copy_fraction"] > 0.97
    assert stats["median_rel_distance_to_train"] < 1e-2

    exact = sample_with(data.mixture, 300, 8, dtype=torch.float64, **kw)
    stats = memorisation_stats(exact, train, data.bases)
    assert stats["on_subspace_fraction"] > 0.97 and stats["median_rel_distance_to_subspaces"] < 1e-2
    assert stats["copy_fraction"] < 0.1 and stats["generalised_fraction"] > 0.85
