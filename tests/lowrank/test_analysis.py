"""Numerical rank and the Jacobian-rank profile against exact answers."""
from __future__ import annotations

import torch

from genlowdim.core.schedules import sigmas_karras
from genlowdim.lowrank.analysis import jacobian_ranks_along_trajectory, numerical_rank
from genlowdim.lowrank.mixture import LowRankMixture, random_bases


def test_numerical_rank_energy_rule():
    # sqrt of cumulative energies of (3, 4, 0.1): 3, 5, 5.001; ||s|| = 5.001 -> 99% needs r = 2
    assert numerical_rank(torch.tensor([0.1, 3.0, 4.0])) == 2
    assert numerical_rank(torch.tensor([1.0, 1.0, 1.0, 1.0])) == 4
    assert numerical_rank(torch.zeros(3)) == 0
    assert numerical_rank(torch.tensor([1.0, 0.2])) == 2  # 0.99·sqrt(1.04) = 1.0096 > 1
    assert numerical_rank(torch.tensor([1.0, 0.2]), energy=0.95) == 1  # 0.95·sqrt(1.04) = 0.969 < 1


def test_exact_single_subspace_denoiser_has_rank_d_along_the_whole_trajectory():
    gen = torch.Generator().manual_seed(0)
    mix = LowRankMixture(random_bases(1, 12, 3, generator=gen))
    sigmas = sigmas_karras(18, 0.002, 80.0, rho=7.0).double()
    x = sigmas[0] * torch.randn(4, 12, generator=gen, dtype=torch.float64)
    rows = jacobian_ranks_along_trajectory(mix, x, sigmas)
    assert len(rows) == 18 and rows[0]["sigma"] == 80.0
    assert all(r["min_rank"] == 3 and r["max_rank"] == 3 for r in rows)
