"""Uniqueness and novelty at scale: reduce each crystal once, prune pairs that cannot match, use every core.

Same answers as comparing with ``StructureMatcher.fit`` pair by pair (``matching.uniqueness(...,
method="pairwise")``), because:

1. ``fit(s1, s2)`` starts by reducing both crystals (Niggli, then primitive cell); here each crystal is
   reduced once (as pymatgen's ``group_structures`` does) and ``fit(r1, r2, skip_structure_reduction=True)``
   is called on the reduced copies, which is the same computation on the same numbers.
2. Pairs are compared only inside one key (reduced formula, number of sites after reduction): ``fit``
   rejects different compositions, and with ``attempt_supercell=False`` different reduced site counts.
3. Inside a key, a pair reaches ``fit`` only when :func:`lattice_screen.may_match` finds a lattice the
   matcher's own lattice step would find (see that module for the bound). ``fit`` itself is
   :func:`fastfit.fit`, which returns the same boolean as pymatgen's with its per-translation work hoisted.
4. Uniqueness keeps the first-come rule: a crystal is a duplicate of the first earlier representative (in
   input order) that it fits. Each key's crystals are taken in rounds (a block of 8 to 256 crystals, as
   many as the representatives already known); every crystal of a round is compared in parallel with the
   representatives found before the round (the first that fits wins), and the ones left over are grouped
   among themselves in input order, one task per key. The decisions do not depend on the number of
   processes.
5. Novelty only asks whether any training crystal of the key fits, so candidates are tried most similar
   cell first (one task per generated crystal).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from genlowdim.metrics.fastfit import crystal, fit
from genlowdim.metrics.lattice_screen import lattice_shape, may_match
from genlowdim.metrics.matcher import MatchTolerances

BLOCK = 256        # most crystals of one key per uniqueness round
MIN_BLOCK = 8      # fewest, while few representatives are known
_STATE: dict = {}  # reduced crystals and shapes, inherited by forked workers


def _reduce_chunk(args: tuple) -> list:
    structures, tol = args
    from pymatgen.core import Structure

    m = tol.matcher()
    # the reduction fit() applies to each of its arguments (Niggli, then primitive cell)
    return [m._get_reduced_structure(Structure.from_sites(s), m._primitive_cell, True) for s in structures]


def _pool(workers: int):
    """A process pool that inherits ``_STATE`` (fork), or None for one process."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        return None
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))


def _map(pool, fn, tasks: list, workers: int) -> list:
    if pool is None or len(tasks) < 2:
        return [fn(t) for t in tasks]
    chunk = max(1, len(tasks) // (8 * workers))
    return list(pool.map(fn, tasks, chunksize=chunk))


def prepare(structures: Sequence, indices: Sequence[int], tol: MatchTolerances, pool, workers: int,
            chunk: int = 64) -> dict[int, tuple]:
    """index -> (key, reduced structure): key = (reduced formula, number of sites after reduction)."""
    indices = list(indices)
    tasks = [([structures[i] for i in indices[k:k + chunk]], tol) for k in range(0, len(indices), chunk)]
    reduced = [r for part in _map(pool, _reduce_chunk, tasks, workers) for r in part]
    return {i: ((structures[i].composition.reduced_formula, len(r)), r) for i, r in zip(indices, reduced)}


def _longest(*prepared: dict) -> dict:
    """key -> longest reduced-cell edge over the crystals of that key, in units of V^(1/3)."""
    longest: dict = defaultdict(float)
    for part in prepared:
        for key, r in part.values():
            longest[key] = max(longest[key], max(r.lattice.abc) / r.volume ** (1 / 3))
    return longest


def _shapes(prepared: dict, longest: dict, ltol: float) -> dict:
    """index -> LatticeShape, listing lattice vectors far enough for every partner of the same key."""
    return {i: lattice_shape(r.lattice.matrix, longest[key] * (1 + ltol) * 1.001)
            for i, (key, r) in prepared.items()}


def _fits(s1: int, s2: int) -> bool:
    """``fit(structures[s1], structures[s2])`` through the screen (indices into ``_STATE``)."""
    shapes, reduced, tol = _STATE["shapes"], _STATE["reduced"], _STATE["tol"]
    if not may_match(shapes[s1], shapes[s2], tol.ltol, tol.angle_tol):
        return False
    m = tol.matcher()
    crystals = _STATE.setdefault("crystals", {})   # per process: each crystal's fixed arrays, once
    for i in (s1, s2):
        if i not in crystals:
            crystals[i] = crystal(reduced[i], m)
    return fit(m, crystals[s1], crystals[s2])


def _first_fit(task: tuple) -> int:
    """task (i, candidates): the first candidate c (in order) with fit(c, i), else -1."""
    i, candidates = task
    return next((c for c in candidates if _fits(c, i)), -1)


def _first_come(members: list[int]) -> list[int]:
    """Greedy grouping of ``members`` (input order) among themselves: for each, the first earlier member
    that is a representative and fits it, else -1 (it becomes a representative)."""
    reps: list[int] = []
    out = []
    for i in members:
        hit = _first_fit((i, reps))
        if hit < 0:
            reps.append(i)
        out.append(hit)
    return out


def _any_fit(task: tuple) -> bool:
    """task (i, train keys): whether fit(i, t) for some training crystal t."""
    i, train = task
    return any(_fits(i, t) for t in train)


def _with_state(reduced: dict, shapes: dict, tol: MatchTolerances, workers: int, body):
    """Runs ``body(pool)`` with ``_STATE`` set (and inherited by the pool's forked workers)."""
    _STATE.update(reduced=reduced, shapes=shapes, tol=tol)
    try:
        pool = _pool(workers)
        try:
            return body(pool)
        finally:
            if pool is not None:
                pool.shutdown()
    finally:
        _STATE.clear()


def first_come_duplicates(prepared: dict, tol: MatchTolerances, workers: int, n: int) -> np.ndarray:
    """duplicate_of: (n,) int, -1 for a representative, else the first earlier representative of the same
    key it fits (``fit(representative, crystal)``). prepared: :func:`prepare` of the crystals to group."""
    groups: dict = defaultdict(list)
    for i in sorted(prepared):
        groups[prepared[i][0]].append(i)
    shapes = _shapes(prepared, _longest(prepared), tol.ltol)
    reduced = {i: r for i, (_, r) in prepared.items()}
    dup: dict[int, int] = {}

    def body(pool) -> None:
        reps: dict = defaultdict(list)
        done = dict.fromkeys(groups, 0)
        while any(done[k] < len(g) for k, g in groups.items()):
            # a block grows with the representatives already known: early on most crystals are new
            blocks = {k: g[done[k]:done[k] + min(BLOCK, max(MIN_BLOCK, len(reps[k])))]
                      for k, g in groups.items() if done[k] < len(g)}
            tasks = [(i, reps[k]) for k, b in blocks.items() for i in b if reps[k]]
            first = dict(zip([t[0] for t in tasks], _map(pool, _first_fit, tasks, workers)))
            left = [[i for i in b if first.get(i, -1) < 0] for b in blocks.values()]
            inner = _map(pool, _first_come, left, workers)   # one task per key: keys are independent
            for (k, b), lk, hits in zip(blocks.items(), left, inner):
                dup.update({i: first[i] for i in b if first.get(i, -1) >= 0})
                dup.update({i: h for i, h in zip(lk, hits) if h >= 0})
                reps[k] += [i for i, h in zip(lk, hits) if h < 0]
                done[k] += len(b)

    _with_state(reduced, shapes, tol, workers, body)
    out = np.full(n, -1)
    for i, r in dup.items():
        out[i] = r
    return out


def _likeliest_first(i: int, candidates: list[int], shapes: dict) -> list[int]:
    """``candidates`` ordered by how close their unit-volume cell edges are to crystal i's, so that a
    match, when there is one, is usually met first (novelty only asks whether any candidate fits)."""
    if len(candidates) < 2:
        return candidates
    mine = np.log(np.sort(shapes[i].lengths))
    theirs = np.log(np.sort(np.array([shapes[c].lengths for c in candidates]), axis=1))
    return [candidates[k] for k in np.argsort(np.abs(theirs - mine).sum(axis=1), kind="stable")]


def novel_flags(prepared: dict, train_prepared: dict, tol: MatchTolerances, workers: int, n: int) -> np.ndarray:
    """novel: (n,) bool, True where crystal i (a key of ``prepared``) fits no training crystal
    (``fit(crystal, training crystal)``); train_prepared: :func:`prepare` of the training set."""
    offset = n  # training crystals live after the generated ones in the shared index space
    train_groups: dict = defaultdict(list)
    for j in sorted(train_prepared):
        train_groups[train_prepared[j][0]].append(j + offset)
    shapes = _shapes(prepared, _longest(prepared, train_prepared), tol.ltol)
    # training crystals are only ever the second argument: their cell, no lattice vectors
    shapes.update({j + offset: lattice_shape(v[1].lattice.matrix, 0.0) for j, v in train_prepared.items()})
    reduced = {i: r for i, (_, r) in prepared.items()}
    reduced.update({j + offset: r for j, (_, r) in train_prepared.items()})
    tasks = [(i, _likeliest_first(i, train_groups.get(prepared[i][0], []), shapes)) for i in sorted(prepared)]
    seen = _with_state(reduced, shapes, tol, workers, lambda pool: _map(pool, _any_fit, tasks, workers))
    out = np.zeros(n, bool)
    out[[t[0] for t in tasks]] = ~np.asarray(seen, bool) if tasks else []
    return out
