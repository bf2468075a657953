"""Composition-constrained type assignment for a batch of cells of any sizes (the ``composition`` type update).

Each crystal keeps its multiset of atom types; the decoder's log-probabilities decide which atom gets which
type, so that Σ log p(atom, type) is maximal. This is one linear assignment problem per crystal, between its
atoms and its type slots. All crystals are solved together, without a Python loop over crystals:

* cells of at most :data:`BRUTE_FORCE_MAX_ATOMS` atoms: every ordering is scored at once on the tensors'
  device, one group per cell size (the path the shipped perov_5 outputs were recorded with);
* cells whose atoms all share one type need nothing;
* cells of two types a, b: the atoms with the largest log p(a) - log p(b) take the a's (exact, one sort);
* larger cells of three or more types: the transportation problem (atoms to K distinct types, their counts as
  capacities) by successive shortest paths over the K type nodes, batched over crystals with padding
  (:func:`_few_types`): the loop runs over atom positions (≤ 24), never over crystals.

Every path is exact: the same total log-probability as ``scipy.optimize.linear_sum_assignment`` per crystal
(:func:`assign_types_per_crystal`, the reference). Between tied assignments the choices may differ.
A single block-diagonal sparse matching (``scipy.sparse.csgraph.min_weight_full_bipartite_matching``) is
exact too, but was measured growing quadratically with the batch when a crystal repeats a type.
"""
from __future__ import annotations

import itertools

import torch
from torch_geometric.utils import scatter

BRUTE_FORCE_MAX_ATOMS = 6   # 6! = 720 orderings per crystal; larger cells are solved as below


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
        out[large] = _few_types(log_probs[large], types[large], batch[large])
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


def _few_types(log_probs, types, batch):
    """Exact for crystals of any number K of distinct types, all at once: the transportation problem
    (atoms -> K types with their counts as capacities) by successive shortest paths. Atoms join one at a
    time (the same index in every crystal together); each joins along a shortest path in the residual graph
    over the K type nodes (edge t1 -> t2: move the assigned atom of t1 that gains most to t2; Bellman-Ford,
    K - 1 rounds), which keeps every partial assignment optimal. ``batch``: (M,) crystal ids, contiguous.
    Returns (M,) atomic numbers."""
    _, size = torch.unique_consecutive(batch, return_counts=True)
    crystal = torch.repeat_interleave(torch.arange(len(size), device=types.device), size)
    slot = torch.arange(len(types), device=types.device) - (torch.cumsum(size, 0) - size)[crystal]
    table, cap = _type_table(types, crystal, len(size))                         # (C, K) numbers, counts
    cost = log_probs.new_zeros(len(size), int(size.max()), table.shape[1], dtype=torch.float64)
    cost[crystal, slot] = -log_probs.detach().double().gather(1, table[crystal] - 1)
    cost = torch.where(cap[:, None, :] > 0, cost, torch.full_like(cost, UNUSABLE))
    where = torch.full(cost.shape[:2], -1, dtype=torch.long, device=types.device)  # (C, n) type index
    load = torch.zeros_like(cap)
    for i in range(cost.shape[1]):
        _join(cost, where, load, cap, i, i < size)
    return table[crystal, where[crystal, slot]]


UNUSABLE = 1e9      # cost of a padded type column: never free (capacity 0), never a cheaper move


def _type_table(types, crystal, num):
    """(C, K) each crystal's distinct atomic numbers (padded with 1, capacity 0) and (C, K) their counts."""
    present = torch.zeros(num, 101, dtype=torch.long, device=types.device)
    present.index_put_((crystal, types), torch.ones_like(types), accumulate=True)
    k = int((present > 0).sum(-1).max())
    key = torch.where(present > 0, torch.arange(101, device=types.device), 1000)
    table = torch.sort(key, -1).values[:, :k]
    cap = torch.where(table < 1000, present.gather(1, table.clamp_max(100)), 0)
    return table.clamp_max(100).clamp_min(1), cap


def _join(cost, where, load, cap, i, active):
    """Assign atom i of each ``active`` crystal along a shortest augmenting path (in place)."""
    C, _, K = cost.shape
    rows = torch.arange(C, device=cost.device)
    held = where[:, :i, None] == torch.arange(K, device=cost.device)          # (C, i, K); atoms ≥ i hold none
    move = cost[:, :i, None, :] - cost[:, :i, :, None]                          # [c, j, t1, t2]
    move = move.masked_fill(~held[:, :, :, None], float("inf"))
    edge, mover = move.min(1) if i else (cost.new_full((C, K, K), float("inf")), None)
    dist, pred = cost[:, i].clone(), torch.full_like(load, -1)
    for _ in range(K - 1):
        best, via = (dist[:, :, None] + edge).min(1)
        better = best < dist - 1e-12
        if not bool(better.any()):
            break
        dist, pred = torch.where(better, best, dist), torch.where(better, via, pred)
    end = dist.masked_fill(load >= cap, float("inf")).argmin(-1)
    load.scatter_add_(1, end[:, None], active.long()[:, None])
    cur, walking = end, active.clone()
    for _ in range(K):
        back = pred[rows, cur]
        arrive = walking & (back < 0)
        where[:, i] = torch.where(arrive, cur, where[:, i])
        walking = walking & (back >= 0)
        if not bool(walking.any()):
            break
        j = mover[rows, back.clamp_min(0), cur]
        where.scatter_(1, j[:, None], torch.where(walking, cur, where.gather(1, j[:, None])[:, 0])[:, None])
        cur = torch.where(walking, back, cur)
