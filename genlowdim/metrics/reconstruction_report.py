"""``evaluate_reconstruction`` / ``evaluate_reconstruction_best_of``: CDVAE's reconstruction metrics (match
rate, RMS distance) with the protocol's matcher, and beside them what that matcher does not see: the cell-size
errors and the match rate with volume scaling off (:mod:`genlowdim.metrics.cell_size`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from genlowdim.metrics.cell_size import cell_size
from genlowdim.metrics.matcher import MatchTolerances, resolve_tolerances
from genlowdim.metrics.matching import reconstruction
from genlowdim.metrics.report import pack, validity, write_outputs
from genlowdim.metrics.result import MetricResult
from genlowdim.runtime import usable_cpus

__all__ = ["evaluate_reconstruction", "evaluate_reconstruction_best_of"]


def _valid(sv: MetricResult, cv: MetricResult, definition: str) -> tuple[np.ndarray, MetricResult]:
    valid = sv.per_item["valid"] & cv.per_item["valid"]
    return valid, MetricResult("valid", float(valid.mean()) if len(valid) else None,
                               {"definition": definition, "num_valid": int(valid.sum())}, {"valid": valid})


def _cell_columns(cells: dict, i: int) -> dict:
    """The cell-size columns of structures.csv for pair i."""
    lengths = cells["length_error_mean"].per_item["length_errors"][i]
    return {"matched_unscaled": bool(cells["match_rate_unscaled"].per_item["matched"][i]),
            "vpa_error": cells["vpa_error_mean"].per_item["vpa_error"][i],
            "a_error": lengths[0], "b_error": lengths[1], "c_error": lengths[2],
            "angle_error_max": cells["length_error_mean"].per_item["angle_error"][i]}


def evaluate_reconstruction(predictions: Sequence, truths: Sequence, *, stol: float | None = None,
                            angle_tol: float | None = None, ltol: float | None = None,
                            tolerances: MatchTolerances | None = None, workers: int | None = None,
                            out_dir: str | Path | None = None, ids: Sequence[str] | None = None) -> dict:
    """CDVAE reconstruction metrics: ``predictions[i]`` is compared with ``truths[i]`` (pair them first,
    e.g. by id); invalid predictions (struct or comp) count as failures. Also the cell-size errors and the
    unscaled match rate. ``tolerances`` (or the loose floats): the protocol's matcher, CDVAE's by default.
    Returns the metrics.json dict."""
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions but {len(truths)} truths")
    tol = resolve_tolerances(tolerances, stol, angle_tol, ltol)
    workers = usable_cpus() if workers is None else workers
    sv, cv = validity(predictions)
    valid, valid_result = _valid(sv, cv, "struct_valid and comp_valid")
    results = {"struct_valid": sv, "comp_valid": cv, "valid": valid_result}
    results.update(reconstruction(predictions, truths, valid, workers=workers, tolerances=tol))
    m = results["match_rate"].per_item
    cells = cell_size(predictions, truths, valid, m["matched"], tolerances=tol, workers=workers)
    results.update(cells)
    report = pack("reconstruction", results, {"workers": workers, "num_truths": len(truths),
                                              "num_predictions": len(predictions)})
    if out_dir is not None:
        ids = list(ids) if ids is not None else [str(i) for i in range(len(truths))]
        rows = [{"id": ids[i], "struct_valid": bool(sv.per_item["valid"][i]),
                 "invalid_reason": sv.per_item["reason"][i], "comp_valid": bool(cv.per_item["valid"][i]),
                 "valid": bool(valid[i]), "matched": bool(m["matched"][i]), "rms_dist": m["rms"][i],
                 **_cell_columns(cells, i)}
                for i in range(len(truths))]
        write_outputs(Path(out_dir), report, rows)
    return report


def _best_of(rms: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """(n,) smallest finite RMS among each truth's candidates (NaN: none matched)."""
    best = np.full(n, np.nan)
    for i in range(n):
        mine = rms[owner == i]
        if np.isfinite(mine).any():
            best[i] = np.nanmin(mine)
    return best


def evaluate_reconstruction_best_of(candidates: Sequence[Sequence], truths: Sequence, *,
                                    stol: float | None = None, angle_tol: float | None = None,
                                    ltol: float | None = None, tolerances: MatchTolerances | None = None,
                                    workers: int | None = None, out_dir: str | Path | None = None,
                                    ids: Sequence[str] | None = None) -> dict:
    """Best-of-k reconstruction (DiffCSP's multi-sample CSP metric): ``candidates[i]`` is the list of
    predictions for ``truths[i]`` (best ranked first). A truth is matched when any valid candidate matches;
    rms_dist is the mean over matched truths of their smallest RMS. Validity is over all candidates;
    ``params.match_rate`` also records the first candidate's match rate (one-sample CSP). The unscaled match
    rate is best of k as well; the cell-size errors are the first candidate's."""
    if len(candidates) != len(truths):
        raise ValueError(f"{len(candidates)} candidate lists but {len(truths)} truths")
    tol = resolve_tolerances(tolerances, stol, angle_tol, ltol)
    workers = usable_cpus() if workers is None else workers
    flat = [c for group in candidates for c in group]
    owner = np.array([i for i, group in enumerate(candidates) for _ in group], dtype=int)
    sv, cv = validity(flat)
    valid, valid_result = _valid(sv, cv, "struct_valid and comp_valid, over all candidates")
    paired = [truths[i] for i in owner]
    rms = reconstruction(flat, paired, valid, workers=workers, tolerances=tol)["match_rate"].per_item["rms"]
    rms_unscaled = reconstruction(flat, paired, valid, workers=workers,
                                  tolerances=tol.unscaled())["match_rate"].per_item["rms"]
    first = np.array([np.flatnonzero(owner == i)[0] if len(candidates[i]) else -1 for i in range(len(truths))])
    best = _best_of(rms, owner, len(truths))
    matched = np.isfinite(best)
    first_matched = np.array([f >= 0 and np.isfinite(rms[f]) for f in first])
    sizes = [len(g) for g in candidates]
    params = {**tol.to_dict(), "num_truths": len(truths),
              "candidates_per_truth": {"min": min(sizes, default=0), "max": max(sizes, default=0)},
              "num_matched": int(matched.sum()), "first_candidate_match_rate": float(first_matched.mean()),
              "first_candidate_rms_dist": float(np.nanmean(rms[first[first_matched]])) if first_matched.any()
              else None, "definition": "matched when any candidate matches; rms = smallest over its matches"}
    results = {"struct_valid": sv, "comp_valid": cv, "valid": valid_result,
               "match_rate": MetricResult("match_rate", float(matched.mean()) if len(truths) else None, params),
               "rms_dist": MetricResult("rms_dist", float(np.nanmean(best)) if matched.any() else None, params)}
    cells = _first_candidate_cells(flat, truths, first, valid, rms, rms_unscaled, tol, workers)
    matched_unscaled = np.isfinite(_best_of(rms_unscaled, owner, len(truths)))
    unscaled = cells["match_rate_unscaled"]
    unscaled.params.update(first_candidate_match_rate=unscaled.value, num_matched=int(matched_unscaled.sum()),
                           definition="best of k: matched when any candidate matches with scale=False")
    unscaled.value = float(matched_unscaled.mean()) if len(truths) else None
    results.update(cells)
    report = pack("reconstruction", results, {"workers": workers, "num_truths": len(truths),
                                              "num_predictions": len(flat), "samples": "best of k",
                                              "cell_size": "errors of the first (top-ranked) candidate"})
    if out_dir is not None:
        ids = list(ids) if ids is not None else [str(i) for i in range(len(truths))]
        rows = [{"id": ids[i], "candidates": sizes[i], "valid_candidates": int(valid[owner == i].sum()),
                 "matched": bool(matched[i]), "first_matched": bool(first_matched[i]), "rms_dist": best[i],
                 **_cell_columns(cells, i), "matched_unscaled": bool(matched_unscaled[i])}
                for i in range(len(truths))]
        write_outputs(Path(out_dir), report, rows)
    return report


def _first_candidate_cells(flat, truths, first, valid, rms, rms_unscaled, tol, workers) -> dict:
    """:func:`cell_size` of each truth's first candidate (a truth without candidates: an invalid pair)."""
    has = first >= 0
    preds = [flat[f] if f >= 0 else None for f in first]
    ok, scaled, unscaled = has.copy(), np.zeros(len(first), bool), np.full(len(first), np.nan)
    ok[has] = valid[first[has]]
    scaled[has], unscaled[has] = np.isfinite(rms[first[has]]), rms_unscaled[first[has]]
    return cell_size(preds, truths, ok, scaled, tolerances=tol, workers=workers, unscaled_rms=unscaled)
