"""Periodic radius graphs for batches of crystals, in pure torch (CPU and GPU, no numpy round-trip).

An edge e = (j -> i) joins neighbour j, shifted by the integer image ``cell_offsets[e]``, to centre i:
``edge_vec[e] = pos[j] + cell_offsets[e] @ lattice[b] - pos[i]`` with ``‖edge_vec‖ <= cutoff``.

Method: positions are wrapped into the home cell (fractional coordinates in [0, 1)); then every image
of j that can lie within the cutoff of i has integer shift |m_k| <= n_k = ceil(cutoff / h_k), where h_k
is the perpendicular height of the cell along k (the distance between the lattice planes spanned by the
two other vectors). Crystals are grouped by (n_1, n_2, n_3); within a group every ordered pair of atoms
of a crystal is tried against every shift of the (2n_1+1)(2n_2+1)(2n_3+1) grid, in chunks of crystals
that bound the candidate tensor. The search runs without gradients; ``edge_vec`` is then recomputed
from the caller's ``pos`` and ``lattice`` so gradients flow to both.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import torch

from genlowdim.crystal.lattice import lattice_heights

__all__ = ["PeriodicGraph", "periodic_radius_graph", "MAX_CANDIDATES_PER_CHUNK"]

# candidate (pair, shift) combinations evaluated at once; a few (2**22,) float64 tables ~ 100 MB
MAX_CANDIDATES_PER_CHUNK = 2 ** 22
# the search keeps candidates up to cutoff * (1 + margin); the exact cut is made on the final lengths
_SEARCH_MARGIN = 1e-5


class PeriodicGraph(NamedTuple):
    """Edges of a periodic radius graph (E edges), sorted by (centre, distance, generation order).

    edge_index: (2, E) long, row 0 = neighbour/source j, row 1 = centre i (PyG "source_to_target").
    cell_offsets: (E, 3) long, the integer lattice image of j.
    edge_vec: (E, 3) Å, pos[j] + cell_offsets @ lattice[b] - pos[i].
    edge_len: (E,) Å, ‖edge_vec‖.
    """

    edge_index: torch.Tensor
    cell_offsets: torch.Tensor
    edge_vec: torch.Tensor
    edge_len: torch.Tensor


def _check_inputs(pos: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, cutoff: float,
                  max_neighbors: int | None) -> None:
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape (N, 3), got {tuple(pos.shape)}")
    if lattice.dim() != 3 or lattice.shape[1:] != (3, 3):
        raise ValueError(f"lattice must have shape (B, 3, 3), got {tuple(lattice.shape)}")
    if batch.shape != (pos.shape[0],) or batch.dtype != torch.long:
        raise ValueError(f"batch must be a long tensor of shape ({pos.shape[0]},), "
                         f"got {batch.dtype} {tuple(batch.shape)}")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if max_neighbors is not None and max_neighbors < 1:
        raise ValueError(f"max_neighbors must be >= 1 or None, got {max_neighbors}")
    if pos.shape[0] and (int(batch.min()) < 0 or int(batch.max()) >= lattice.shape[0]):
        raise ValueError(f"batch indices must lie in [0, {lattice.shape[0]})")


def _shift_grid(n: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """All integer shifts with |m_k| <= n_k, shape (M, 3) long, in lexicographic order."""
    ranges = [range(-k, k + 1) for k in n]
    return torch.tensor(list(itertools.product(*ranges)), dtype=torch.long, device=device)


def _pairs_of(crystals: torch.Tensor, counts: torch.Tensor, starts: torch.Tensor,
              order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ordered atom pairs (j, i) inside each given crystal -> (j, i, crystal), global atom indices."""
    n = counts[crystals]
    pair_crystal = torch.repeat_interleave(crystals, n * n)
    first_pair = torch.cumsum(n * n, 0) - n * n
    local = torch.arange(pair_crystal.shape[0], device=crystals.device) - torch.repeat_interleave(
        first_pair, n * n)
    n_pair = counts[pair_crystal]
    start = starts[pair_crystal]
    centre = order[start + local // n_pair]
    neighbour = order[start + local % n_pair]
    return neighbour, centre, pair_crystal


def _search_chunk(home_frac: torch.Tensor, metric: torch.Tensor, crystals: torch.Tensor,
                  shifts: torch.Tensor, counts: torch.Tensor, starts: torch.Tensor, order: torch.Tensor,
                  cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges (j, i, shift) among the crystals of one chunk, from wrapped fractional coordinates.

    With d = f_j - f_i and metric G = L Lᵀ, |(d + m) L|² = dᵀGd + 2 (Gd)·m + mᵀGm: the (pair, shift)
    table then needs one (P, 3) x (3, M) product instead of a (P, M, 3) Cartesian tensor.
    """
    neighbour, centre, pair_crystal = _pairs_of(crystals, counts, starts, order)
    local = torch.repeat_interleave(torch.arange(crystals.shape[0], device=home_frac.device),
                                    counts[crystals] ** 2)
    shifts_f = shifts.to(home_frac.dtype)
    chunk_metric = metric[crystals]  # (C, 3, 3)
    delta = home_frac[neighbour] - home_frac[centre]  # (P, 3)
    g_delta = torch.einsum("pk,pkl->pl", delta, chunk_metric[local])
    shift_norm2 = torch.einsum("mk,ckl,ml->cm", shifts_f, chunk_metric, shifts_f)  # (C, M)
    dist2 = torch.addmm((delta * g_delta).sum(-1, keepdim=True), g_delta, 2.0 * shifts_f.T)
    dist2 += shift_norm2[local]
    margin = 1.0 + max(_SEARCH_MARGIN, 1e3 * torch.finfo(home_frac.dtype).eps)
    pair_idx, shift_idx = (dist2 <= (cutoff * margin) ** 2).nonzero(as_tuple=True)
    found_shift = shifts[shift_idx]
    # an atom is not its own neighbour at zero shift (its other images are)
    not_self = (neighbour[pair_idx] != centre[pair_idx]) | (found_shift != 0).any(-1)
    pair_idx, found_shift = pair_idx[not_self], found_shift[not_self]
    return neighbour[pair_idx], centre[pair_idx], found_shift


def _chunks(crystals: torch.Tensor, cost: torch.Tensor) -> list[torch.Tensor]:
    """Split ``crystals`` into consecutive chunks whose total ``cost`` stays under the budget
    (a single crystal above the budget gets a chunk of its own)."""
    ends = torch.cumsum(cost, 0)
    chunk_id = torch.div(ends - cost, MAX_CANDIDATES_PER_CHUNK, rounding_mode="floor")
    _, sizes = torch.unique_consecutive(chunk_id, return_counts=True)
    return list(torch.split(crystals, sizes.tolist()))


def _keep_nearest(dist: torch.Tensor, centre: torch.Tensor, num_nodes: int, cutoff: float,
                  max_neighbors: int | None) -> torch.Tensor:
    """Indices of edges sorted by (centre, distance, input order), truncated to max_neighbors per centre."""
    # one stable sort on centre * (2 cutoff) + distance; float64 keeps ~1e-9 Å resolution for 10⁶ atoms
    key = centre.to(torch.float64) * (2.0 * cutoff + 1.0) + dist.to(torch.float64)
    perm = torch.sort(key, stable=True).indices
    if max_neighbors is None:
        return perm
    sorted_centre = centre[perm]
    counts = torch.bincount(sorted_centre, minlength=num_nodes)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(perm.shape[0], device=perm.device) - first[sorted_centre]
    return perm[rank < max_neighbors]


def _search(pos: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor,
            cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate edges (j, i, offsets relative to the caller's positions), unsorted, no gradients."""
    num_graphs = lattice.shape[0]
    frac = torch.einsum("ni,nij->nj", pos, torch.linalg.inv(lattice)[batch])
    wrap = torch.floor(frac)
    metric = lattice @ lattice.transpose(1, 2)
    images = torch.ceil(cutoff / lattice_heights(lattice)).long()  # (B, 3)
    counts = torch.bincount(batch, minlength=num_graphs)
    starts = torch.cumsum(counts, 0) - counts
    order = torch.sort(batch, stable=True).indices
    found = []
    groups, group_of = torch.unique(images, dim=0, return_inverse=True)
    for g, n in enumerate(groups.tolist()):
        crystals = torch.nonzero((group_of == g) & (counts > 0)).flatten()
        shifts = _shift_grid(tuple(n), pos.device)
        for chunk in _chunks(crystals, counts[crystals] ** 2 * shifts.shape[0]):
            found.append(_search_chunk(frac - wrap, metric, chunk, shifts, counts, starts, order, cutoff))
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=pos.device)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=pos.device)
    neighbour, centre, shift = (torch.cat(parts) for parts in zip(*found))
    # undo the wrapping: home_j + m L - home_i = pos_j + (m - w_j + w_i) L - pos_i
    offsets = shift - wrap[neighbour].long() + wrap[centre].long()
    return neighbour, centre, offsets


def periodic_radius_graph(pos: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, cutoff: float,
                          max_neighbors: int | None = None) -> PeriodicGraph:
    """All periodic neighbours within ``cutoff`` Å of every atom of a batch of crystals.

    pos: (N, 3) Cartesian Å (any position, wrapped internally); lattice: (B, 3, 3) rows = lattice vectors;
    batch: (N,) long crystal index of each atom. Self-pairs are excluded at zero offset and included at
    nonzero offsets (an atom sees its own images when the cell is smaller than the cutoff).
    With ``max_neighbors = k`` each centre keeps its k nearest edges (ties: earlier generated edge first,
    i.e. lower neighbour position in its crystal, then lexicographically smaller search shift).
    Edges are sorted by (centre, distance). Works for any cell shape and any cell size.
    """
    _check_inputs(pos, lattice, batch, cutoff, max_neighbors)
    with torch.no_grad():
        neighbour, centre, offsets = _search(pos.detach(), lattice.detach(), batch, cutoff)
    edge_vec = pos[neighbour] - pos[centre] + torch.einsum(
        "ei,eij->ej", offsets.to(pos.dtype), lattice[batch[centre]])
    edge_len = edge_vec.norm(dim=-1)
    inside = (edge_len <= cutoff).nonzero().flatten()
    keep = inside[_keep_nearest(edge_len.detach()[inside], centre[inside], pos.shape[0], cutoff,
                                max_neighbors)]
    return PeriodicGraph(edge_index=torch.stack([neighbour[keep], centre[keep]]),
                         cell_offsets=offsets[keep], edge_vec=edge_vec[keep], edge_len=edge_len[keep])
