"""Structure matching: reconstruction (CDVAE ``RecEval``), uniqueness and novelty.

All use pymatgen's ``StructureMatcher`` with the settings of one
:class:`~genlowdim.metrics.matcher.MatchTolerances` (``tolerances=``, or the loose ``stol``, ``angle_tol``,
``ltol`` floats; CDVAE's stol=0.5, angle_tol=10°, ltol=0.3, volumes scaled by default) and record them.

- match rate = #matched pairs / #truths; a pair matches when the prediction is valid and
  ``get_rms_dist`` finds a mapping (an exception counts as no match, as in CDVAE);
  rms_dist = mean normalised RMS displacement over matched pairs (``get_rms_dist(...)[0]``).
- uniqueness = #distinct structures / #valid samples (greedy grouping inside each reduced formula:
  the matcher never matches different reduced compositions, so grouping changes nothing but speed).
- novelty = fraction of valid samples that match no training structure of the same reduced formula.
"""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import Sequence

import numpy as np

from genlowdim.metrics.matcher import ANGLE_TOL, LTOL, STOL, MatchTolerances, matcher, resolve_tolerances  # noqa: F401
from genlowdim.metrics.result import MetricResult, as_float


def _rms_pairs(args: tuple) -> list[float]:
    pairs, tol = args
    out = []
    for pred, truth in pairs:
        try:
            rms = tol.matcher().get_rms_dist(pred, truth)
        except Exception:  # noqa: BLE001 - CDVAE counts a matcher failure as no match
            rms = None
        out.append(np.nan if rms is None else float(rms[0]))
    return out


def map_pairs(pairs: list, tol: MatchTolerances, workers: int, work=_rms_pairs, chunk: int = 32) -> list:
    """``work((chunk of pairs, tol))`` over ``pairs`` in chunks of ``chunk``, on ``workers`` processes; the
    results concatenated in order."""
    chunks = [(pairs[i:i + chunk], tol) for i in range(0, len(pairs), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        return [r for c in chunks for r in work(c)]
    import multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=mp.get_context(method)) as pool:
        return [r for res in pool.map(work, chunks) for r in res]


def reconstruction(predictions: Sequence, truths: Sequence, valid_mask: np.ndarray | None = None,
                   stol: float | None = None, angle_tol: float | None = None, ltol: float | None = None,
                   workers: int = 1, *, tolerances: MatchTolerances | None = None) -> dict[str, MetricResult]:
    """``match_rate`` and ``rms_dist`` for predictions paired with truths in order (same length).

    valid_mask: (N,) bool; invalid predictions (and ``None``) count as failures without matching.
    per_item: ``matched: (N,) bool``, ``rms: (N,)`` (NaN when unmatched).
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions but {len(truths)} truths: pair them by id")
    valid = np.ones(len(truths), bool) if valid_mask is None else np.asarray(valid_mask, bool)
    todo = [i for i in range(len(truths)) if valid[i] and predictions[i] is not None and truths[i] is not None]
    rms = np.full(len(truths), np.nan)
    tol = resolve_tolerances(tolerances, stol, angle_tol, ltol)
    rms[todo] = map_pairs([(predictions[i], truths[i]) for i in todo], tol, workers)
    matched = ~np.isnan(rms)
    params = dict(tol.to_dict(), num_truths=len(truths),
                  num_valid_predictions=int(valid.sum()), num_matched=int(matched.sum()))
    items = {"matched": matched, "rms": rms}
    return {"match_rate": MetricResult("match_rate", as_float(matched.mean()) if len(rms) else None,
                                       params, items),
            "rms_dist": MetricResult("rms_dist", as_float(np.nanmean(rms)) if matched.any() else None,
                                     params)}


def _by_formula(structures: Sequence, indices) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        groups[structures[i].composition.reduced_formula].append(i)
    return groups


def reduce_for_matching(structures: Sequence, indices, stol: float | None = None, angle_tol: float | None = None,
                        ltol: float | None = None, workers: int = 1, *,
                        tolerances: MatchTolerances | None = None) -> dict:
    """index -> (key, reduced crystal) for ``structures[indices]``, the reduction ``fit`` applies, done once;
    pass it to :func:`uniqueness` / :func:`novelty` (``reduced=``, ``train_reduced=``) to share it."""
    from genlowdim.metrics.dedup import _pool, prepare

    pool = _pool(workers)
    try:
        return prepare(structures, indices, resolve_tolerances(tolerances, stol, angle_tol, ltol), pool, workers)
    finally:
        if pool is not None:
            pool.shutdown()


def matching_candidates(structures: Sequence, valid: np.ndarray, train_structures: Sequence | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crystals that need matching at all: (valid crystals sharing their reduced formula with another
    valid one, valid crystals whose formula a training crystal has, training crystals whose formula a
    valid crystal has); the last two are empty without ``train_structures``."""
    idx = np.flatnonzero(valid)
    formulas = [structures[i].composition.reduced_formula for i in idx]
    counts = defaultdict(int)
    for f in formulas:
        counts[f] += 1
    paired = np.array([i for i, f in zip(idx, formulas) if counts[f] > 1], dtype=int)
    if train_structures is None:
        return paired, np.array([], int), np.array([], int)
    train_formulas = [s.composition.reduced_formula for s in train_structures]
    seen = set(train_formulas)
    in_train = np.array([i for i, f in zip(idx, formulas) if f in seen], dtype=int)
    train_idx = np.array([j for j, f in enumerate(train_formulas) if f in counts], dtype=int)
    return paired, in_train, train_idx


def _checked(tol: MatchTolerances, method: str) -> MatchTolerances:
    """The pruned path's lattice screen compares volume-normalised cells: it holds for scaled matching only."""
    if method == "pruned" and not tol.scale:
        raise ValueError("method 'pruned' needs scale=True (its lattice screen compares cells rescaled to one "
                         "volume); use method='pairwise' for unscaled matching")
    return tol


def _method_params(method: str, workers: int) -> dict:
    if method == "pairwise":
        return {"method": "pairwise StructureMatcher.fit inside each reduced formula"}
    return {"method": "reduce once; fit only within (reduced formula, reduced site count) and when the "
                      "matcher's lattice step can succeed (docs/metrics.md); first-come representatives",
            "workers": workers}


def uniqueness(structures: Sequence, valid_mask: np.ndarray | None = None, stol: float | None = None,
               angle_tol: float | None = None, ltol: float | None = None, workers: int = 1,
               method: str = "pruned", reduced: dict | None = None, *,
               tolerances: MatchTolerances | None = None) -> MetricResult:
    """Fraction of distinct structures among the valid ones; per_item ``duplicate_of: (N,)`` (-1 = first).

    A valid crystal is a duplicate of the first earlier distinct crystal it fits (``fit(earlier, it)``).
    method: ``"pruned"`` (reduce once, screen, ``workers`` processes) or ``"pairwise"`` (every ``fit`` in
    one process, the original path); both give the same duplicate_of. reduced: from
    :func:`reduce_for_matching` on the valid indices (computed when not given)."""
    valid = np.ones(len(structures), bool) if valid_mask is None else np.asarray(valid_mask, bool)
    tol = _checked(resolve_tolerances(tolerances, stol, angle_tol, ltol), method)
    if method == "pairwise":
        duplicate_of = _pairwise_duplicates(structures, valid, tol)
    elif method == "pruned":
        from genlowdim.metrics.dedup import first_come_duplicates

        paired = matching_candidates(structures, valid)[0]   # a crystal alone in its formula is distinct
        if reduced is None:
            reduced = reduce_for_matching(structures, paired, workers=workers, tolerances=tol)
        duplicate_of = first_come_duplicates({i: reduced[i] for i in paired}, tol, workers, len(structures))
    else:
        raise ValueError(f"method {method!r}: use 'pruned' or 'pairwise'")
    n_valid = int(valid.sum())
    n_distinct = int(np.sum(valid & (duplicate_of < 0)))
    params = dict(tol.to_dict(), num_valid=n_valid, num_distinct=n_distinct,
                  **_method_params(method, workers))
    return MetricResult("unique", n_distinct / n_valid if n_valid else None, params,
                        {"duplicate_of": duplicate_of})


def _pairwise_duplicates(structures: Sequence, valid: np.ndarray, tol: MatchTolerances) -> np.ndarray:
    """The original path: every ``fit`` on the raw structures, one process."""
    m = tol.matcher()
    duplicate_of = np.full(len(structures), -1)
    from genlowdim.runtime import progress

    groups = _by_formula(structures, np.flatnonzero(valid))
    for members in progress(groups.values(), total=len(groups), desc="uniqueness (formula groups)"):
        representatives: list[int] = []
        for i in members:
            hit = next((r for r in representatives if m.fit(structures[r], structures[i])), None)
            if hit is None:
                representatives.append(i)
            else:
                duplicate_of[i] = hit
    return duplicate_of


def novelty(structures: Sequence, train_structures: Sequence, valid_mask: np.ndarray | None = None,
            stol: float | None = None, angle_tol: float | None = None, ltol: float | None = None,
            workers: int = 1, method: str = "pruned", reduced: dict | None = None,
            train_reduced: dict | None = None, *, tolerances: MatchTolerances | None = None) -> MetricResult:
    """Fraction of valid structures that match no training structure (``fit(structure, training)``);
    per_item ``novel: (N,) bool``. method, reduced: as in :func:`uniqueness`; train_reduced: from
    :func:`reduce_for_matching` on every training index."""
    valid = np.ones(len(structures), bool) if valid_mask is None else np.asarray(valid_mask, bool)
    tol = _checked(resolve_tolerances(tolerances, stol, angle_tol, ltol), method)
    if method == "pairwise":
        novel = _pairwise_novel(structures, train_structures, valid, tol)
    elif method == "pruned":
        from genlowdim.metrics.dedup import novel_flags

        _, idx, train_idx = matching_candidates(structures, valid, train_structures)
        if reduced is None:
            reduced = reduce_for_matching(structures, idx, workers=workers, tolerances=tol)
        if train_reduced is None:
            train_reduced = reduce_for_matching(train_structures, train_idx, workers=workers, tolerances=tol)
        # a valid crystal whose formula no training crystal has is novel without matching
        novel = valid.copy()
        novel[idx] = novel_flags({i: reduced[i] for i in idx}, {j: train_reduced[j] for j in train_idx}, tol,
                                 workers, len(structures))[idx]
    else:
        raise ValueError(f"method {method!r}: use 'pruned' or 'pairwise'")
    n_valid = int(valid.sum())
    params = dict(tol.to_dict(), num_valid=n_valid, num_train=len(train_structures),
                  num_novel=int(novel.sum()), **_method_params(method, workers))
    return MetricResult("novel", float(novel.sum() / n_valid) if n_valid else None, params, {"novel": novel})


def _pairwise_novel(structures: Sequence, train_structures: Sequence, valid: np.ndarray,
                    tol: MatchTolerances) -> np.ndarray:
    """The original path: ``fit`` against every training structure of the same formula, one process."""
    m = tol.matcher()
    train_groups = _by_formula(train_structures, range(len(train_structures)))
    novel = np.zeros(len(structures), bool)
    from genlowdim.runtime import progress

    for i in progress(np.flatnonzero(valid), desc="novelty"):
        same = train_groups.get(structures[i].composition.reduced_formula, [])
        novel[i] = not any(m.fit(structures[i], train_structures[j]) for j in same)
    return novel
