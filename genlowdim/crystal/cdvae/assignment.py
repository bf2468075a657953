"""Composition-constrained type assignment for a batch of cells of any sizes (the ``composition`` type update).

Each crystal keeps its multiset of atom types; the decoder's log-probabilities decide which atom gets which
type, so that Σ log p(atom, type) is maximal. This is one linear assignment problem per crystal, between its
atoms and its type slots. All crystals are solved together, without a Python loop over crystals:

* cells of at most :data:`BRUTE_FORCE_MAX_ATOMS` atoms: every ordering is scored at once on the tensors'
  device, one group per cell size (the path the shipped perov_5 outputs were recorded with);
* cells whose atoms all share one type need nothing;
* cells of two types a, b: the atoms with the largest log p(a) - log p(b) take the a's (exact, one sort);
* the other, larger cells (three or more types) form one block-diagonal sparse bipartite graph (an atom is joined only to the slots of
  its own crystal), solved in one call to ``scipy.sparse.csgraph.min_weight_full_bipartite_matching``
  (LAPJVsp, exact). The blocks are disconnected, so a minimum-weight perfect matching of the whole graph is
  a minimum-weight assignment of every crystal: the same optimum as ``linear_sum_assignment`` per crystal.
  Between tied assignments the two solvers may pick differently.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch_geometric.utils import scatter

BRUTE_FORCE_MAX_ATOMS = 6   # 6! = 720 orderings per crystal; larger cells go to the sparse matching


def assign_types(log_probs, types, batch):
    """Re-assign each crystal's multiset of types to its atoms so that Σ log p(atom, type) is maximal.

    ``log_probs``: (N, 100) per-atom log-probabilities over atomic numbers 1..100; ``types``: (N,) current
    atomic numbers (their multiset per crystal is kept); ``batch``: (N,), atoms of a crystal contiguous.
    Returns (N,) atomic numbers."""
    counts = torch.bincount(batch)
    starts = torch.cumsum(counts, 0) - counts
    out = types.clone()
    for n in torch.unique(counts[(counts >= 2) & (counts <= BRUTE_FORCE_MAX_ATOMS)]).tolist():
        crystals = torch.nonzero(counts == n).squeeze(-1)
        idx = starts[crystals][:, None] + torch.arange(n, device=types.device)     # (C, n) atom indices
        out[idx] = _best_orderings(log_probs[idx], types[idx])
    kinds = _distinct_types(types, batch, len(counts))
    large = counts[batch] > BRUTE_FORCE_MAX_ATOMS
    two = torch.nonzero(large & (kinds[batch] == 2)).squeeze(-1)
    if two.numel():
        out[two] = _two_types(log_probs[two], types[two], batch[two])
    large = torch.nonzero(large & (kinds[batch] > 2)).squeeze(-1)
    if large.numel():
        rows, cols = _matching(log_probs[large], types[large], batch[large])
        out[large[rows]] = types[large[cols]]
    return out


def _distinct_types(types, batch, num_crystals):
    """(B,) how many distinct atomic numbers each crystal holds (``types`` in 1..100)."""
    present = types.new_zeros(num_crystals, 101, dtype=torch.bool)
    present[batch, types] = True
    return present.sum(-1)


def _two_types(log_probs, types, batch):
    """Exact for crystals of two distinct types a < b: the k atoms (k = count of a) with the largest
    log p(a) - log p(b) take a, since Σ log p = Σ_all log p(b) + Σ_chosen [log p(a) - log p(b)].
    ``batch``: (M,) crystal ids, atoms of a crystal contiguous. Returns (M,) atomic numbers."""
    num = int(batch.max()) + 1
    a = scatter(types, batch, 0, dim_size=num, reduce="min")[batch]
    b = scatter(types, batch, 0, dim_size=num, reduce="max")[batch]
    k = scatter((types == a).long(), batch, 0, dim_size=num, reduce="sum")[batch]
    gain = log_probs.gather(1, (a - 1)[:, None]).squeeze(1) - log_probs.gather(1, (b - 1)[:, None]).squeeze(1)
    order = torch.sort(gain, descending=True, stable=True).indices
    order = order[torch.sort(batch[order], stable=True).indices]                 # by crystal, then by gain
    first = torch.cumsum(torch.bincount(batch, minlength=num), 0) - torch.bincount(batch, minlength=num)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - first[batch[order]]
    return torch.where(rank < k, a, b)


def _best_orderings(log_probs, slots):
    """Brute force for C cells of n atoms: ``log_probs`` (C, n, 100), ``slots`` (C, n) atomic numbers.
    Returns (C, n): the ordering of each cell's slots with the largest Σ log p (the first one among ties)."""
    n = slots.shape[1]
    # m[c, i, j] = log p(atom i gets the type of slot j); score every ordering of the slots
    m = torch.gather(log_probs, 2, (slots - 1)[:, None, :].expand(-1, n, -1))
    perms = torch.tensor(list(itertools.permutations(range(n))), device=slots.device)  # (P, n)
    rows = torch.arange(n, device=slots.device)
    score = m[:, rows[None, :], perms].sum(-1)                                      # (C, P)
    return torch.gather(slots, 1, perms[score.argmax(-1)])


def _matching(log_probs, types, batch):
    """One exact sparse matching for M atoms of several crystals (contiguous; ``batch`` (M,) their crystal
    ids, any labels). Atom i may take the type of atom j only when both are in one crystal; the weight is
    1 - log p(i, types[j]) (≥ 1: a constant shift that keeps the optimum and stays a stored, nonzero
    entry). Returns (rows, cols) as (M,) index tensors on ``types``' device: atom rows[k] gets types[cols[k]]."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    _, size = torch.unique_consecutive(batch, return_counts=True)
    per_atom = torch.repeat_interleave(size, size)                                 # (M,) its crystal's size
    first = torch.repeat_interleave(torch.cumsum(size, 0) - size, size)            # (M,) its crystal's first atom
    indptr = torch.cat([per_atom.new_zeros(1), torch.cumsum(per_atom, 0)])
    row = torch.repeat_interleave(torch.arange(len(types), device=types.device), per_atom)
    col = first[row] + torch.arange(int(indptr[-1]), device=types.device) - indptr[row]
    weight = 1.0 - log_probs.detach()[row, types[col] - 1].double()
    graph = csr_matrix((weight.cpu().numpy(), col.cpu().numpy(), indptr.cpu().numpy()),
                       shape=(len(types), len(types)))
    rows, cols = min_weight_full_bipartite_matching(graph)
    return (torch.as_tensor(rows.astype(np.int64), device=types.device),
            torch.as_tensor(cols.astype(np.int64), device=types.device))


def assign_types_per_crystal(log_probs, types, batch):
    """The reference: ``scipy.optimize.linear_sum_assignment`` one crystal at a time (a Python loop over
    crystals). Same arguments and optimum as :func:`assign_types`; kept for tests and ``bench/decode_sizes.py``."""
    from scipy.optimize import linear_sum_assignment

    counts = torch.bincount(batch).tolist()
    lp = log_probs.detach().double().cpu().numpy()
    ty = types.cpu().numpy()
    out, start = ty.copy(), 0
    for n in counts:
        sl = ty[start:start + n]
        r, c = linear_sum_assignment(-lp[start:start + n][:, sl - 1])
        out[start + r] = sl[c]
        start += n
    return torch.as_tensor(out, device=types.device)
