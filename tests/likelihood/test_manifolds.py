"""Toys: samples lie on the support, have the stated intrinsic dimension, distances are exact."""
import math

import pytest
import torch

from genlowdim.likelihood.manifolds import MANIFOLDS, local_pca_rank, make_manifold, random_orthogonal

KW = {"molrg": {"num_components": 2, "subspace_dim": 2}}


@pytest.mark.parametrize("name", MANIFOLDS)
@pytest.mark.parametrize("dim", [4, 10, 50])
def test_samples_lie_on_support(name, dim):
    toy = make_manifold(name, dim, seed=3, **KW.get(name, {}))
    x = toy.sample(500, torch.Generator().manual_seed(0))
    assert x.shape == (500, dim)
    assert float(toy.distance_to_support(x).max()) < 1e-5  # float32 round-off of unit-scale points


@pytest.mark.parametrize("name", MANIFOLDS)
def test_local_pca_rank_is_intrinsic_dim(name):
    toy = make_manifold(name, 10, seed=1, **KW.get(name, {}))
    x = toy.sample(4000, torch.Generator().manual_seed(1)).double()
    ranks = local_pca_rank(x, num_neighbours=30, num_centres=40, energy=0.97)
    # the median over centres is robust to the few centres near a fold or the swiss roll's edge
    assert sorted(ranks)[len(ranks) // 2] == toy.intrinsic_dim


@pytest.mark.parametrize("name", ["circle", "sphere", "torus", "torus3d", "swiss_roll"])
def test_distance_to_support_of_normal_offsets(name):
    # push on-support points along a normal direction orthogonal to the embedding: distance = offset
    toy = make_manifold(name, 12, seed=2)
    x = toy.sample(200, torch.Generator().manual_seed(2)).double()
    normal = torch.linalg.qr(torch.cat([toy.basis, torch.randn(12, 1, dtype=torch.float64)], 1))[0][:, -1]
    offsets = torch.linspace(0.0, 0.3, 200, dtype=torch.float64)
    got = toy.distance_to_support(x + offsets[:, None] * normal)
    assert torch.allclose(got, offsets, atol=1e-5)


def test_in_plane_distances_circle_and_swiss_roll_against_brute_force():
    circle = make_manifold("circle", 2, seed=0, radius=2.0)
    p = torch.tensor([[0.0, 0.5], [3.0, 0.0], [1.0, 1.0]], dtype=torch.float64) @ circle.basis.T
    assert torch.allclose(circle.distance_to_support(p), torch.tensor([1.5, 1.0, 2 - math.sqrt(2)],
                                                                      dtype=torch.float64))
    roll = make_manifold("swiss_roll", 3, seed=0)
    dense = roll.sample(200_000, torch.Generator().manual_seed(5)).double()
    q = roll.sample(50, torch.Generator().manual_seed(6)).double()
    q = q + 0.05 * torch.randn(50, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    brute = torch.cdist(q, dense).min(1).values  # upper bound, tight for a dense sample
    got = roll.distance_to_support(q)
    assert (got <= brute + 1e-9).all() and (brute - got).max() < 0.01


def test_random_orthogonal_is_orthogonal_and_seeded():
    q = random_orthogonal(7, torch.Generator().manual_seed(0))
    assert torch.allclose(q @ q.T, torch.eye(7, dtype=torch.float64), atol=1e-12)
    assert torch.equal(q, random_orthogonal(7, torch.Generator().manual_seed(0)))


def test_sampling_is_seeded_and_uniform_on_circle():
    toy = make_manifold("circle", 10, seed=0)
    a = toy.sample(20000, torch.Generator().manual_seed(4)).double()
    assert torch.equal(a.float(), toy.sample(20000, torch.Generator().manual_seed(4)))
    theta = torch.atan2(a @ toy.basis[:, 1], a @ toy.basis[:, 0])
    hist = torch.histc(theta, bins=8, min=-math.pi, max=math.pi) / 20000
    assert torch.allclose(hist, torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.01)


def test_ring_torus_area_uniform():
    # area element (R + r cos v): the fraction of points on the outer half (cos v > 0) is
    # ∫_{-π/2}^{π/2}(R + r cos v)dv / (2πR) = 1/2 + r/(πR)
    toy = make_manifold("torus3d", 3, seed=0, major=1.0, minor=0.4)
    x = toy.sample(40000, torch.Generator().manual_seed(0)).double() @ toy.basis
    outer = (x[:, :2].norm(dim=1) > 1.0).double().mean()
    assert float(outer) == pytest.approx(0.5 + 0.4 / math.pi, abs=0.01)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="unknown manifold 'klein'"):
        make_manifold("klein", 10)
    with pytest.raises(ValueError, match="smaller than the 3 dimensions"):
        make_manifold("sphere", 2)
    with pytest.raises(ValueError, match="K·d"):
        make_manifold("molrg", 3, num_components=2, subspace_dim=2)
    with pytest.raises(ValueError, match=r"shape \(N, 10\)"):
        make_manifold("circle", 10).distance_to_support(torch.zeros(3, 4))
