"""Periodic radius graphs for batches of crystals, in pure torch (CPU and GPU, no numpy round-trip).

An edge e = (j -> i) joins neighbour j, shifted by the integer image ``cell_offsets[e]``, to centre i:
``edge_vec[e] = pos[j] + cell_offsets[e] @ lattice[b] - pos[i]`` with ``‖edge_vec‖ <= cutoff``.

Method: with h_k the perpendicular height of the cell along k (the spacing of the lattice planes spanned
by the two other vectors), the k-th fractional component of any vector shorter than the cutoff is at most
r_k = cutoff / h_k in size. For a pair (j, i) with d = f_j - f_i the images m that can be within the
cutoff therefore satisfy |d_k + m_k| <= r_k: a window of at most floor(2 r_k) + 1 integers per direction
(for wrapped coordinates this is inside the grid |m_k| <= ceil(cutoff / h_k)). Crystals are grouped by
window size; within a group every ordered atom pair of a crystal is tried against every shift of its
window, in chunks of crystals that bound the candidate table. The search runs without gradients;
``edge_vec`` is then recomputed from the caller's ``pos`` and ``lattice`` so gradients flow to both.
Cells smaller than the cutoff and strongly skewed cells need nothing special: their windows are wider.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from genlowdim.crystal.geometry.lattice import lattice_heights

__all__ = ["PeriodicGraph", "periodic_radius_graph", "MAX_CANDIDATES_PER_CHUNK"]

# candidate (pair, shift) combinations evaluated at once: a (2**22,) float64 table is 32 MiB; with its
# mask and index tensors one chunk stays near 100-150 MiB
MAX_CANDIDATES_PER_CHUNK = 2 ** 22
# the search keeps candidates up to cutoff * (1 + margin); the exact cut is made on the final lengths
_SEARCH_MARGIN = 1e-5
# a decoded lattice can be degenerate (non-finite, or a cell flatter than cutoff / MAX_REACH between lattice
# planes): its image search stops at MAX_REACH plane spacings (a non-finite cell gets no edges) instead of
# sizing a window from an infinite or NaN reach, which would stop the whole batch
MAX_REACH = 8.0


class PeriodicGraph(NamedTuple):
    """Edges of a periodic radius graph (E edges), sorted by (centre, distance, neighbour, offset).

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


def _window(w: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """All integer shifts u with 0 <= u_k < w_k, shape (W, 3) long, in lexicographic order."""
    axes = [torch.arange(k, device=device) for k in w]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def _pairs_of(crystals: torch.Tensor, counts: torch.Tensor, starts: torch.Tensor,
              order: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """All ordered atom pairs inside each given crystal, centre-major: (neighbour j, centre i, crystal,
    row = centre's position among the chunk's atoms, b = neighbour's position inside its crystal)."""
    n = counts.index_select(0, crystals)
    local_crystal = torch.repeat_interleave(torch.arange(crystals.shape[0], device=crystals.device), n * n)
    first_pair = torch.cumsum(n * n, 0) - n * n
    local = torch.arange(local_crystal.shape[0], device=crystals.device) - first_pair.index_select(
        0, local_crystal)
    n_pair = n.index_select(0, local_crystal)
    a, b = torch.div(local, n_pair, rounding_mode="floor"), local % n_pair
    start = starts.index_select(0, crystals).index_select(0, local_crystal)
    row = (torch.cumsum(n, 0) - n).index_select(0, local_crystal) + a
    return (order.index_select(0, start + b), order.index_select(0, start + a),
            crystals.index_select(0, local_crystal), row, b)


def _pair_features(delta: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """(P, 10) rows [dᵀGd, 2Gd, G11, G22, G33, 2G12, 2G13, 2G23] so that |(d + m) L|² = row · φ(m)."""
    g_delta = (delta.unsqueeze(-1) * metric).sum(1)  # (P, 3); an elementwise form beats batched 3x3 matmuls
    quad = torch.stack([metric[:, 0, 0], metric[:, 1, 1], metric[:, 2, 2],
                        2 * metric[:, 0, 1], 2 * metric[:, 0, 2], 2 * metric[:, 1, 2]], dim=-1)
    return torch.cat([(delta * g_delta).sum(-1, keepdim=True), 2 * g_delta, quad], dim=-1)


def _shift_features(shifts: torch.Tensor) -> torch.Tensor:
    """(10, M) columns φ(m) = [1, m, m1², m2², m3², m1m2, m1m3, m2m3]."""
    m1, m2, m3 = shifts.unbind(-1)
    return torch.stack([torch.ones_like(m1), m1, m2, m3, m1 * m1, m2 * m2, m3 * m3, m1 * m2, m1 * m3, m2 * m3])


def _search_chunk(frac: torch.Tensor, metric: torch.Tensor, reach: torch.Tensor, crystals: torch.Tensor,
                  window: torch.Tensor, counts: torch.Tensor, starts: torch.Tensor, order: torch.Tensor,
                  limit2: torch.Tensor, max_neighbors: int | None) -> tuple[torch.Tensor, ...]:
    """Edges (j, i, offset, squared length) among the crystals of one chunk.

    For the pair (j, i) with d = f_j - f_i, an image m can be within the cutoff only if
    |d_k + m_k| <= r_k = cutoff / h_k, i.e. m = lo + u with lo = ceil(-r - d) and u in the shared window
    [0, W)³, W_k = floor(2 r_k) + 1. With d' = d + lo and metric G = L Lᵀ,
    |(d' + u) L|² = d'ᵀGd' + 2 (Gd')·u + uᵀGu is linear in 10 features of the pair and 10 of the shift:
    the whole (pair, shift) table is one matrix product.
    """
    neighbour, centre, pair_crystal, row, b = _pairs_of(crystals, counts, starts, order)
    delta = frac.index_select(0, neighbour) - frac.index_select(0, centre)  # (P, 3)
    lower = torch.ceil(-reach.index_select(0, pair_crystal) - delta)
    features = _pair_features(delta + lower, metric.index_select(0, pair_crystal))
    dist2 = features @ _shift_features(window.to(frac.dtype))  # (P, W)
    _mask_self(dist2, neighbour == centre, lower, window)
    pair_limit2 = limit2.index_select(0, pair_crystal)
    if max_neighbors is None:
        flat = (dist2 <= pair_limit2.unsqueeze(1)).view(-1).nonzero().view(-1)
        pair_idx = torch.div(flat, window.shape[0], rounding_mode="floor")
        shift_idx, found2 = flat % window.shape[0], dist2.view(-1).index_select(0, flat)
    else:
        pair_idx, shift_idx, found2 = _nearest_in_rows(dist2, row, b, pair_limit2, max_neighbors)
    offsets = lower.long().index_select(0, pair_idx) + window.index_select(0, shift_idx)
    return neighbour.index_select(0, pair_idx), centre.index_select(0, pair_idx), offsets, found2


def _mask_self(dist2: torch.Tensor, is_self: torch.Tensor, lower: torch.Tensor, window: torch.Tensor) -> None:
    """An atom is not its own neighbour at zero offset (its other images are): set those entries to inf."""
    self_pairs = is_self.nonzero().view(-1)
    zero = -lower.index_select(0, self_pairs).long()  # window coordinates of the zero offset
    sizes = window.max(dim=0).values + 1
    inside = ((zero >= 0) & (zero < sizes)).all(-1)
    linear = (zero[:, 0] * sizes[1] + zero[:, 1]) * sizes[2] + zero[:, 2]
    dist2[self_pairs[inside], linear[inside]] = float("inf")


def _nearest_in_rows(dist2: torch.Tensor, row: torch.Tensor, b: torch.Tensor, pair_limit2: torch.Tensor,
                     k: int) -> tuple[torch.Tensor, ...]:
    """(pair, shift, squared length) of the candidates of each centre up to its k-th smallest length
    (with a rounding tolerance, so exact ties are all kept; the caller truncates on exact lengths).

    Candidates are laid out one row per centre, (neighbour b, shift) along the row."""
    num_rows, n_max, width = int(row.max()) + 1, int(b.max()) + 1, dist2.shape[1]
    if dist2.shape[0] == num_rows * n_max:  # every crystal of the chunk has n_max atoms: a plain view
        table = dist2.view(num_rows, n_max * width)
    else:
        table = dist2.new_full((num_rows, n_max, width), float("inf"))
        table[row, b] = dist2
        table = table.view(num_rows, n_max * width)
    row_first_pair = (b == 0).nonzero().view(-1)  # pairs are centre-major, so rows appear in order
    kth = torch.topk(table, min(k, table.shape[1]), dim=1, largest=False, sorted=False).values.amax(1)
    tie_tolerance = 1.0 + 1e3 * torch.finfo(dist2.dtype).eps
    limit2 = torch.minimum(kth * tie_tolerance, pair_limit2.index_select(0, row_first_pair))
    flat = (table <= limit2.unsqueeze(1)).view(-1).nonzero().view(-1)
    found2 = table.view(-1).index_select(0, flat)
    cand_row = torch.div(flat, table.shape[1], rounding_mode="floor")
    col = flat % table.shape[1]
    pair_idx = row_first_pair.index_select(0, cand_row) + torch.div(col, width, rounding_mode="floor")
    return pair_idx, col % width, found2


def _rank_below(group: torch.Tensor, value: torch.Tensor, num_groups: int, k: int | None) -> torch.Tensor:
    """Indices sorted by (group, value, input order); with k, only the first k of each group."""
    # one stable sort on group * span + value; float64 keeps ~1e-9 resolution for 10⁶ groups
    span = float(value.max()) + 1.0 if value.numel() else 1.0
    perm = torch.sort(group.to(torch.float64) * span + value.to(torch.float64), stable=True).indices
    if k is None:
        return perm
    sorted_group = group.index_select(0, perm)
    counts = torch.bincount(sorted_group, minlength=num_groups)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(perm.shape[0], device=perm.device) - first.index_select(0, sorted_group)
    return perm[rank < k]


def _chunks(crystals: torch.Tensor, cost: torch.Tensor) -> list[torch.Tensor]:
    """Split ``crystals`` into consecutive chunks whose total ``cost`` stays under the budget
    (a single crystal above the budget gets a chunk of its own)."""
    ends = torch.cumsum(cost, 0)
    chunk_id = torch.div(ends - cost, MAX_CANDIDATES_PER_CHUNK, rounding_mode="floor")
    _, sizes = torch.unique_consecutive(chunk_id, return_counts=True)
    return list(torch.split(crystals, sizes.tolist()))


def _search(pos: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, radius: torch.Tensor,
            max_neighbors: int | None) -> tuple[torch.Tensor, ...]:
    """Edges (j, i, offsets relative to the caller's positions, squared lengths), unsorted, within
    ``radius[b]`` (plus a rounding margin) of each atom of crystal b (radius 0: crystal skipped); with
    max_neighbors only each centre's nearest."""
    num_graphs = lattice.shape[0]
    frac = torch.einsum("ni,nij->nj", pos, torch.linalg.inv(lattice).index_select(0, batch))
    metric = lattice @ lattice.transpose(1, 2)
    margin = 1.0 + max(_SEARCH_MARGIN, 1e3 * torch.finfo(pos.dtype).eps)
    reach = (radius * margin).unsqueeze(1) / lattice_heights(lattice)  # (B, 3) in lattice-plane spacings
    reach = torch.nan_to_num(reach, nan=0.0, posinf=MAX_REACH).clamp(0.0, MAX_REACH)
    windows = torch.floor(2 * reach).long() + 1
    counts = torch.bincount(batch, minlength=num_graphs)
    starts = torch.cumsum(counts, 0) - counts
    order = torch.sort(batch, stable=True).indices
    found = []
    base = int(windows.max()) + 1 if num_graphs else 1
    keys = (windows[:, 0] * base + windows[:, 1]) * base + windows[:, 2]  # 1-D unique is much faster
    groups, group_of = torch.unique(keys, return_inverse=True)
    for g, key in enumerate(groups.tolist()):
        crystals = torch.nonzero((group_of == g) & (counts > 0) & (radius > 0)).flatten()
        window = _window((key // base // base, key // base % base, key % base), pos.device)
        for chunk in _chunks(crystals, counts[crystals] ** 2 * window.shape[0]):
            found.append(_search_chunk(frac, metric, reach, chunk, window, counts, starts, order,
                                       (radius * margin) ** 2, max_neighbors))
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=pos.device)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=pos.device), pos.new_zeros(0)
    return tuple(torch.cat(parts) for parts in zip(*found))


# k neighbours of an atom fill on average a sphere of volume k V / n; searching first within this
# factor times its radius finds all k nearest for nearly every centre (the rest are searched again)
_K_RADIUS_FACTOR = 1.4


def _search_nearest(pos: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, cutoff: float,
                    k: int) -> tuple[torch.Tensor, ...]:
    """The k nearest within the cutoff, searched first within a smaller radius R_b = 1.4 (3 k V_b /
    (4 π n_b))^(1/3): a centre with at least k images within R_b has all its k nearest among them;
    crystals where some centre has fewer are searched again with the full cutoff."""
    counts = torch.bincount(batch, minlength=lattice.shape[0])
    volume = torch.linalg.det(lattice).abs()
    k_radius = _K_RADIUS_FACTOR * (3 * k * volume / (4 * torch.pi * counts.clamp_min(1))) ** (1 / 3)
    radius = k_radius.clamp(max=cutoff)
    first = _search(pos, lattice, batch, radius, k)
    short_centre = torch.bincount(first[1], minlength=pos.shape[0]) < k
    redo = torch.zeros_like(radius, dtype=torch.bool).index_fill_(
        0, batch[short_centre], True) & (radius < cutoff)
    if not bool(redo.any()):
        return first
    keep = (~redo.index_select(0, batch.index_select(0, first[1]))).nonzero().view(-1)
    second = _search(pos, lattice, batch, torch.where(redo, torch.full_like(radius, cutoff),
                                                      torch.zeros_like(radius)), k)
    return tuple(torch.cat([a.index_select(0, keep), b]) for a, b in zip(first, second))


def _offsets_cartesian(offsets: torch.Tensor, lattice: torch.Tensor, crystal: torch.Tensor) -> torch.Tensor:
    """offsets (E, 3) @ lattice[crystal] -> (E, 3), as three broadcast multiply-adds (faster than a batch
    of 3x3 products)."""
    rows = lattice.reshape(-1, 9).index_select(0, crystal)
    o = offsets.to(lattice.dtype)
    return o[:, 0:1] * rows[:, 0:3] + o[:, 1:2] * rows[:, 3:6] + o[:, 2:3] * rows[:, 6:9]


def _canonical_order(centre: torch.Tensor, length: torch.Tensor, num_nodes: int, k: int | None) -> torch.Tensor:
    """Edges sorted by (centre, length, neighbour, offset); with k only the first k of each centre.

    The search emits each centre's edges together, in (neighbour, offset) order (pairs are centre-major,
    neighbours in index order, window shifts lexicographic), so one stable sort on (centre, length)
    gives this order whatever the grouping of crystals into chunks."""
    return _rank_below(centre, length, num_nodes, k)


def periodic_radius_graph(pos: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, cutoff: float,
                          max_neighbors: int | None = None) -> PeriodicGraph:
    """All periodic neighbours within ``cutoff`` Å of every atom of a batch of crystals.

    pos: (N, 3) Cartesian Å (any position, wrapped internally); lattice: (B, 3, 3) rows = lattice vectors;
    batch: (N,) long crystal index of each atom. Self-pairs are excluded at zero offset and included at
    nonzero offsets (an atom sees its own images when the cell is smaller than the cutoff).
    With ``max_neighbors = k`` each centre keeps its k nearest edges; exact ties at the k-th distance go
    to the lower neighbour index, then the lexicographically smaller offset. Edges come out sorted by
    (centre, distance, neighbour, offset). Works for any cell shape and any cell size.
    """
    _check_inputs(pos, lattice, batch, cutoff, max_neighbors)
    with torch.no_grad():
        if max_neighbors is None:
            radius = pos.new_full((lattice.shape[0],), float(cutoff))
            neighbour, centre, offsets, _ = _search(pos.detach(), lattice.detach(), batch, radius, None)
        else:
            neighbour, centre, offsets, _ = _search_nearest(pos.detach(), lattice.detach(), batch, cutoff,
                                                            max_neighbors)
    edge_vec = pos.index_select(0, neighbour) - pos.index_select(0, centre) + _offsets_cartesian(
        offsets, lattice, batch.index_select(0, centre))
    edge_len = edge_vec.norm(dim=-1)
    inside = (edge_len.detach() <= cutoff).nonzero().view(-1)
    keep = inside.index_select(0, _canonical_order(centre.index_select(0, inside),
                                                   edge_len.detach().index_select(0, inside), pos.shape[0],
                                                   max_neighbors))
    return PeriodicGraph(edge_index=torch.stack([neighbour.index_select(0, keep), centre.index_select(0, keep)]),
                         cell_offsets=offsets.index_select(0, keep), edge_vec=edge_vec.index_select(0, keep),
                         edge_len=edge_len.index_select(0, keep))
