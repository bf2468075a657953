"""Cell-size error of predictions paired with truths: what the protocol's matcher does not see.

CDVAE's ``StructureMatcher`` rescales both cells to one volume before it compares them, so a reconstructed
or predicted cell 30% too large still counts as a match. Per pair (prediction, truth):

- ``vpa_error`` = (V_pred / N_pred) / (V_truth / N_truth) − 1, the relative error of the volume per atom
  (signed; needs no matching; every pair with a valid prediction);
- ``length_errors`` = |a′| / a − 1 (same for b, c), the relative errors of the lattice lengths after the
  matcher's own mapping: both crystals are reduced as ``get_rms_dist`` reduces them (primitive cell, then
  Niggli); ``StructureMatcher.get_transformation(truth, prediction)`` (same tolerances, ``primitive_cell=False``
  on the reduced copies) gives the integer matrix M that puts the prediction's reduced cell in the basis
  matching the truth's; (a′, b′, c′) are the row lengths of M · L_pred (unscaled). ``angle_error`` is the
  largest |α′ − α| (same for β, γ) in degrees. Only pairs the protocol's (scaled) matcher matches have one;
- ``matched_unscaled``: the same matcher with ``scale=False``. It still compares sites in the average of the
  two cells, so a cell stretched uniformly by less than ``ltol`` (30% in every length, 2.2× the volume) keeps
  zero site displacement and matches: volume scaling off catches cells beyond ``ltol`` and uneven
  distortions that move sites, not a uniformly wrong size.

:func:`cell_size` returns the metrics ``match_rate_unscaled``, ``vpa_error_mean`` / ``vpa_error_median``
(|vpa_error| over valid predictions) and ``length_error_mean`` / ``length_error_median`` (the mean of
|length_errors| over a pair's three lengths, over scaled matches).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from genlowdim.metrics.matcher import MatchTolerances
from genlowdim.metrics.result import MetricResult, as_float

__all__ = ["CELL_SIZE_NAMES", "volume_per_atom_error", "lattice_errors", "cell_size"]

CELL_SIZE_NAMES = ("match_rate_unscaled", "vpa_error_mean", "vpa_error_median", "length_error_mean",
                   "length_error_median")
WITHIN = (0.05, 0.10)   # |vpa_error| bounds of the "scaled match with the right volume" rates


def volume_per_atom_error(prediction, truth) -> float:
    """(V_pred / N_pred) / (V_truth / N_truth) − 1 (a fraction; 0.1 = 10% too large)."""
    return float((prediction.volume / len(prediction)) / (truth.volume / len(truth)) - 1.0)


def lattice_errors(prediction, truth, tolerances: MatchTolerances) -> tuple[np.ndarray, float] | None:
    """(relative length errors (3,) in the truth's reduced basis, largest angle error in degrees) after the
    matcher's mapping of ``prediction`` onto ``truth`` (module docstring); None when it finds no mapping."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice

    pred_r = StructureMatcher._get_reduced_structure(prediction, True, True)
    truth_r = StructureMatcher._get_reduced_structure(truth, True, True)
    m = StructureMatcher(stol=tolerances.stol, angle_tol=tolerances.angle_tol, ltol=tolerances.ltol,
                         scale=tolerances.scale, primitive_cell=False)
    try:
        found = m.get_transformation(truth_r, pred_r)
    except Exception:  # noqa: BLE001 - as for get_rms_dist, a matcher failure is no mapping
        return None
    if found is None:
        return None
    mapped = Lattice(np.asarray(found[0], float) @ pred_r.lattice.matrix)
    lengths = np.array(mapped.abc) / np.array(truth_r.lattice.abc) - 1.0
    return lengths, float(np.max(np.abs(np.array(mapped.angles) - np.array(truth_r.lattice.angles))))


def _lattice_chunk(args: tuple) -> list:
    pairs, tol = args
    return [lattice_errors(pred, truth, tol) for pred, truth in pairs]


def _abs_stats(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = np.abs(values[np.isfinite(values)])
    return (as_float(finite.mean()), as_float(np.median(finite))) if len(finite) else (None, None)


def _mapped_lengths(predictions, truths, matched, tol, workers) -> tuple[np.ndarray, np.ndarray]:
    """Length errors (N, 3) and largest angle errors (N,) of the matched pairs (NaN elsewhere)."""
    from genlowdim.metrics.matching import map_pairs

    lengths, angles = np.full((len(truths), 3), np.nan), np.full(len(truths), np.nan)
    idx = np.flatnonzero(matched)
    found = map_pairs([(predictions[i], truths[i]) for i in idx], tol, workers, work=_lattice_chunk)
    for i, f in zip(idx, found):
        if f is not None:
            lengths[i], angles[i] = f
    return lengths, angles


def cell_size(predictions: Sequence, truths: Sequence, valid_mask: np.ndarray, matched: np.ndarray, *,
              tolerances: MatchTolerances, workers: int = 1, unscaled_rms: np.ndarray | None = None
              ) -> dict[str, MetricResult]:
    """The cell-size metrics of predictions paired with truths in order (module docstring).

    valid_mask: (N,) bool, the predictions that are matched at all; matched: (N,) bool, the protocol's
    (scaled) matches; tolerances: the protocol's; unscaled_rms: (N,) RMS of the unscaled matcher when
    already computed (NaN = no match). per_item of ``vpa_error_mean``: ``vpa_error (N,)``; of
    ``length_error_mean``: ``length_errors (N, 3)``, ``angle_error (N,)``; of ``match_rate_unscaled``:
    ``matched (N,)``, ``rms (N,)``."""
    from genlowdim.metrics.matching import reconstruction

    valid, matched = np.asarray(valid_mask, bool), np.asarray(matched, bool)
    n = len(truths)
    unscaled = tolerances.unscaled()
    if unscaled_rms is None:
        unscaled_rms = reconstruction(predictions, truths, valid, workers=workers,
                                      tolerances=unscaled)["match_rate"].per_item["rms"]
    matched_unscaled = np.isfinite(unscaled_rms)
    vpa = np.array([volume_per_atom_error(predictions[i], truths[i]) if valid[i] and predictions[i] is not None
                    and truths[i] is not None else np.nan for i in range(n)])
    lengths, angles = _mapped_lengths(predictions, truths, matched, tolerances, workers)
    per_pair = np.abs(lengths).mean(axis=1)
    common = {"num_truths": n, "num_valid_predictions": int(valid.sum()), "num_scaled_matches": int(matched.sum())}
    return {
        "match_rate_unscaled": MetricResult("match_rate_unscaled", as_float(matched_unscaled.mean()) if n else None,
                                            {**unscaled.to_dict(), **common, "num_matched": int(matched_unscaled.sum()),
                                             "note": "sites are compared in the average of the two cells, so a cell "
                                                     "stretched uniformly within ltol still matches"},
                                            {"matched": matched_unscaled, "rms": unscaled_rms}),
        **_vpa_results(vpa, matched, common),
        **_length_results(per_pair, lengths, angles, tolerances, common),
    }


def _vpa_results(vpa: np.ndarray, matched: np.ndarray, common: dict) -> dict[str, MetricResult]:
    mean, median = _abs_stats(vpa)
    on_matches = _abs_stats(np.where(matched, vpa, np.nan))
    n = len(vpa)
    within = {f"{w:g}": as_float(np.mean(matched & (np.abs(np.nan_to_num(vpa, nan=np.inf)) <= w))) if n else None
              for w in WITHIN}
    params = {**common, "num_pairs": int(np.isfinite(vpa).sum()),
              "definition": "|(V_pred/N_pred) / (V_truth/N_truth) - 1| over pairs with a valid prediction",
              "over_scaled_matches": {"mean": on_matches[0], "median": on_matches[1],
                                      "num": int((matched & np.isfinite(vpa)).sum())},
              "scaled_match_rate_with_vpa_error_within": within}
    return {"vpa_error_mean": MetricResult("vpa_error_mean", mean, params, {"vpa_error": vpa}),
            "vpa_error_median": MetricResult("vpa_error_median", median, params)}


def _length_results(per_pair, lengths, angles, tol: MatchTolerances, common: dict) -> dict[str, MetricResult]:
    mean, median = _abs_stats(per_pair)
    params = {**common, **tol.to_dict(), "num_pairs": int(np.isfinite(per_pair).sum()),
              "definition": "mean over a, b, c of ||l'|/l - 1| after the matcher's mapping of the prediction's "
                            "reduced cell onto the truth's (get_transformation on primitive, Niggli-reduced "
                            "copies), over scaled matches",
              "angle_error_degrees": {"mean": as_float(np.nanmean(angles)) if np.isfinite(angles).any() else None,
                                      "max": as_float(np.nanmax(angles)) if np.isfinite(angles).any() else None}}
    return {"length_error_mean": MetricResult("length_error_mean", mean, params,
                                              {"length_errors": lengths, "angle_error": angles}),
            "length_error_median": MetricResult("length_error_median", median, params)}
