"""Symmetry checkers for crystal models, usable on any model that reads a PyG batch of crystals.

A crystal batch needs ``frac_coords (N,3)``, ``atom_types (N,)``, ``lattice (B,3,3)`` (rows = lattice
vectors, Å), ``batch (N,)`` and ``num_atoms (B,)``. Each transform returns a new batch describing the *same*
periodic crystals (or their rigid rotation), and the ``check_*`` functions report the largest deviation of a
model's output from what symmetry predicts:

* rotation ``R`` (``e3nn.o3.rand_matrix``, float64): lattice rows rotate (L -> L Rᵀ), fractional
  coordinates are unchanged; invariant outputs stay equal, per-atom vectors v -> v Rᵀ.
* translation by a random fractional vector (wrapped), atom permutation within each crystal,
  equivalent cell choice (a unimodular change of basis L -> M L with wrapped coordinates), and a supercell
  (the cell doubled along a, atoms duplicated): all leave per-crystal invariants and per-atom vectors
  unchanged (vectors of duplicated atoms equal the originals').

Use float64 models and inputs to tell real symmetry breaking (≫1e-8) from round-off.
"""
from __future__ import annotations

from typing import Callable

import torch

UNIMODULAR = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 1, 1]], dtype=torch.float64)


def _clone(batch):
    return batch.clone()


def rotate(batch, rotation: torch.Tensor):
    """Rotate every crystal rigidly: lattice (B,3,3) -> lattice @ Rᵀ; ``rotation``: (3,3) orthogonal."""
    out = _clone(batch)
    out.lattice = batch.lattice @ rotation.to(batch.lattice).T
    return out


def translate(batch, shift_frac: torch.Tensor):
    """Shift all atoms of crystal b by ``shift_frac[b]`` (B,3) fractional, wrapped to [0, 1)."""
    out = _clone(batch)
    out.frac_coords = torch.remainder(batch.frac_coords + shift_frac.to(batch.frac_coords)[batch.batch], 1.0)
    return out


def permute(batch, generator: torch.Generator | None = None):
    """Shuffle the atoms within each crystal (never the identity for a crystal of ≥ 2 atoms).

    Returns (new batch, perm) with new[i] = old[perm[i]]."""
    parts = []
    for b in range(batch.num_graphs):
        idx = torch.nonzero(batch.batch == b).flatten()
        order = torch.randperm(len(idx), generator=generator)
        if len(idx) > 1 and bool((order == torch.arange(len(idx))).all()):
            order = order.roll(1)   # never the identity: it would test nothing
        parts.append(idx[order])
    perm = torch.cat(parts)
    out = _clone(batch)
    out.frac_coords, out.atom_types = batch.frac_coords[perm], batch.atom_types[perm]
    return out, perm


def change_cell(batch, matrix: torch.Tensor = UNIMODULAR):
    """Equivalent cell L' = M L (M integer, det ±1); frac' = frac M⁻¹ wrapped, so Cartesian sites are the same."""
    out = _clone(batch)
    m = matrix.to(batch.lattice)
    out.lattice = m @ batch.lattice
    out.frac_coords = torch.remainder(batch.frac_coords @ torch.linalg.inv(m), 1.0)
    return out


def supercell(batch):
    """The cell doubled along a: lattice row a -> 2a, each atom duplicated at (x/2, y, z) and ((x+1)/2, y, z).

    Atoms of crystal b are listed as [originals, copies]. Returns (new batch, index of the source atom)."""
    from torch_geometric.data import Batch

    items, source, start = [], [], 0
    for b in range(batch.num_graphs):
        idx = torch.nonzero(batch.batch == b).flatten()
        frac = batch.frac_coords[idx]
        scale = frac.new_tensor([0.5, 1.0, 1.0])
        half = torch.cat([frac * scale, (frac + frac.new_tensor([1.0, 0.0, 0.0])) * scale])
        lat = batch.lattice[b].clone()
        lat[0] = 2 * lat[0]
        item = batch.get_example(b).clone()
        item.frac_coords, item.atom_types = half, batch.atom_types[idx].repeat(2)
        item.lattice, item.num_atoms, item.num_nodes = lat[None], item.num_atoms * 2, 2 * len(idx)
        items.append(item)
        source.append(torch.cat([idx, idx]))
        start += len(idx)
    return Batch.from_data_list(items), torch.cat(source)


def _dev(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def check_invariance(fn: Callable, batch, *, generator: torch.Generator | None = None,
                     rotation: torch.Tensor | None = None) -> dict[str, float]:
    """Max |fn(T(batch)) − fn(batch)| for each transform T; ``fn(batch) -> (B, ...)`` per-crystal output."""
    from e3nn import o3

    rotation = o3.rand_matrix(dtype=torch.float64) if rotation is None else rotation
    ref = fn(batch)
    shift = torch.rand((batch.num_graphs, 3), generator=generator, dtype=torch.float64)
    return {
        "rotation": _dev(fn(rotate(batch, rotation)), ref),
        "translation": _dev(fn(translate(batch, shift)), ref),
        "permutation": _dev(fn(permute(batch, generator)[0]), ref),
        "cell_choice": _dev(fn(change_cell(batch)), ref),
        "supercell": _dev(fn(supercell(batch)[0]), ref),
    }


def check_vector_equivariance(fn: Callable, batch, *, generator: torch.Generator | None = None,
                              rotation: torch.Tensor | None = None) -> dict[str, float]:
    """For per-atom vector outputs ``fn(batch) -> (N, 3)`` (Cartesian): rotation v -> v Rᵀ; translation,
    cell choice unchanged; permutation and supercell follow the atoms. Returns max deviations."""
    from e3nn import o3

    rotation = o3.rand_matrix(dtype=torch.float64) if rotation is None else rotation
    ref = fn(batch)
    shift = torch.rand((batch.num_graphs, 3), generator=generator, dtype=torch.float64)
    permuted, perm = permute(batch, generator)
    bigger, source = supercell(batch)
    return {
        "rotation": _dev(fn(rotate(batch, rotation)), ref @ rotation.to(ref).T),
        "translation": _dev(fn(translate(batch, shift)), ref),
        "permutation": _dev(fn(permuted), ref[perm]),
        "cell_choice": _dev(fn(change_cell(batch)), ref),
        "supercell": _dev(fn(bigger), ref[source]),
    }


def random_crystals(num_atoms: list[int], *, generator: torch.Generator | None = None,
                    dtype=torch.float64, length_range=(4.0, 6.0), angle_range=(75.0, 105.0)):
    """A PyG batch of random crystals (one per entry of ``num_atoms``) with generic positions (no ties in
    neighbour distances), random lattices and atomic numbers 1..100 — test input for the checkers."""
    from torch_geometric.data import Batch, Data

    from genlowdim.crystal.geometry.lattice import lattice_from_params

    items = []
    for n in num_atoms:
        u = torch.rand((2, 3), generator=generator, dtype=dtype)
        lengths = length_range[0] + (length_range[1] - length_range[0]) * u[:1]
        angles = angle_range[0] + (angle_range[1] - angle_range[0]) * u[1:]
        items.append(Data(frac_coords=torch.rand((n, 3), generator=generator, dtype=dtype),
                          atom_types=torch.randint(1, 101, (n,), generator=generator),
                          lengths=lengths, angles=angles, lattice=lattice_from_params(lengths, angles),
                          num_atoms=torch.tensor([n]), y=torch.zeros(1, dtype=dtype), num_nodes=n))
    return Batch.from_data_list(items)
