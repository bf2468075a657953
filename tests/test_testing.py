"""The symmetry checkers pass models symmetric by construction and catch models that are not."""
import torch

from genlowdim.crystal.geometry.graph import periodic_radius_graph
from genlowdim.crystal.geometry.lattice import frac_to_cart
from genlowdim.testing import (change_cell, check_invariance, check_vector_equivariance, random_crystals,
                               supercell)


def _graph(b):
    pos = frac_to_cart(b.frac_coords, b.lattice, b.batch)
    return periodic_radius_graph(pos, b.lattice, b.batch, 4.0, None)


def mean_neighbour_energy(b):
    """Per-crystal mean over atoms of Σ_j exp(−r_ij): invariant under every transform by construction."""
    g = _graph(b)
    per_atom = torch.zeros(len(b.batch), dtype=b.frac_coords.dtype).index_add_(0, g.edge_index[1],
                                                                                 torch.exp(-g.edge_len))
    out = torch.zeros(b.num_graphs, dtype=per_atom.dtype).index_add_(0, b.batch, per_atom)
    return out / torch.bincount(b.batch).to(out.dtype)


def pair_forces(b):
    """Per-atom Σ_j exp(−r_ij) r̂_ij: an equivariant vector field by construction."""
    g = _graph(b)
    w = torch.exp(-g.edge_len)[:, None] * g.edge_vec / g.edge_len[:, None]
    return torch.zeros(len(b.batch), 3, dtype=w.dtype).index_add_(0, g.edge_index[1], w)


def test_symmetric_models_pass():
    gen = torch.Generator().manual_seed(0)
    b = random_crystals([3, 4], generator=gen)
    assert max(check_invariance(mean_neighbour_energy, b, generator=gen).values()) < 1e-10
    assert max(check_vector_equivariance(pair_forces, b, generator=gen).values()) < 1e-10


def test_broken_models_are_caught():
    gen = torch.Generator().manual_seed(1)
    b = random_crystals([3, 4], generator=gen)
    cart_mean = lambda x: torch.stack([frac_to_cart(x.frac_coords, x.lattice, x.batch)[x.batch == k].mean(0)
                                       for k in range(x.num_graphs)])
    dev = check_invariance(cart_mean, b, generator=gen)
    assert dev["rotation"] > 1e-3 and dev["translation"] > 1e-3 and dev["permutation"] < 1e-12
    order_weighted = lambda x: torch.stack([(torch.arange(1.0, 1 + int((x.batch == k).sum()), dtype=torch.float64)
                                             [:, None] * x.frac_coords[x.batch == k]).sum(0)
                                            for k in range(x.num_graphs)])
    assert check_invariance(order_weighted, b, generator=gen)["permutation"] > 1e-3
    fixed_vector = lambda x: torch.ones(len(x.batch), 3, dtype=torch.float64)
    assert check_vector_equivariance(fixed_vector, b, generator=gen)["rotation"] > 1e-3


def test_cell_transforms_keep_the_sites():
    b = random_crystals([4], generator=torch.Generator().manual_seed(2))
    c = change_cell(b)
    assert abs(float(torch.linalg.det(c.lattice).abs() - torch.linalg.det(b.lattice).abs())) < 1e-9
    big, source = supercell(b)
    assert big.num_atoms.tolist() == [8] and source.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert abs(float(torch.linalg.det(big.lattice).abs() / torch.linalg.det(b.lattice).abs()) - 2) < 1e-9
