"""Coverage metrics of CDVAE (``compute_cov`` in its ``scripts/eval_utils.py``) on plain feature arrays.

With structure distances D_s[i, j] = ||s_i - s'_j|| and composition distances D_c[i, j] = ||c_i - c'_j||
(Euclidean) between generated crystal i and reference crystal j:

- COV-R = (1/M) #{j : min_i D_s[i, j] <= delta_s and min_i D_c[i, j] <= delta_c}
- COV-P = (1/N_all) #{i : min_j D_s[i, j] <= delta_s and min_j D_c[i, j] <= delta_c}
- AMSD/AMCD recall = mean_j min_i D_{s/c}[i, j];  AMSD/AMCD precision = mean_i min_j D_{s/c}[i, j]

The minima are taken separately for the two fingerprints, as CDVAE does. N_all counts every generated
crystal, including those whose fingerprints failed (CDVAE passes the unfiltered count), so failures
lower COV-P. Distances come from ``torch.cdist`` in float64, in row chunks (memory O(chunk * M)).
"""
from __future__ import annotations

import numpy as np
import torch

from genlowdim.metrics.result import MetricResult, as_float
from genlowdim.metrics.vectors import nearest_neighbour_distances

DEFAULT_CHUNK = 2048


def _points(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (N, D) array, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains NaN or inf (drop failed rows first)")
    return t


def nearest_distances(a, b, chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """For a: (N, D), b: (M, D): (min_j ||a_i - b_j|| for each i: (N,), min_i ||a_i - b_j|| for each j: (M,))."""
    a, b = _points(a, "a"), _points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    a_min, b_min = nearest_neighbour_distances(a, b, chunk)
    return a_min.numpy(), b_min.numpy()


def coverage(gen_struct_fp, gen_comp_fp, ref_struct_fp, ref_comp_fp, struct_cutoff: float,
             comp_cutoff: float, num_generated: int | None = None, chunk: int = DEFAULT_CHUNK
             ) -> dict[str, MetricResult]:
    """CDVAE coverage on fingerprint arrays.

    gen_struct_fp: (N, Ds), gen_comp_fp: (N, Dc) for generated crystals with fingerprints;
    ref_struct_fp: (M, Ds), ref_comp_fp: (M, Dc); cutoffs delta_s, delta_c (per dataset: ``genlowdim.structures.registry``);
    num_generated: denominator of COV-P (all generated crystals; defaults to N).
    Returns ``cov_recall``, ``cov_precision``, ``amsd_recall``, ``amsd_precision``, ``amcd_recall``,
    ``amcd_precision`` with per-item nearest distances.
    """
    s_prec, s_rec = nearest_distances(gen_struct_fp, ref_struct_fp, chunk)
    c_prec, c_rec = nearest_distances(gen_comp_fp, ref_comp_fp, chunk)
    n_all = len(s_prec) if num_generated is None else int(num_generated)
    if n_all < len(s_prec):
        raise ValueError(f"num_generated={n_all} is smaller than the {len(s_prec)} fingerprinted crystals")
    rec_hit = (s_rec <= struct_cutoff) & (c_rec <= comp_cutoff)
    prec_hit = (s_prec <= struct_cutoff) & (c_prec <= comp_cutoff)
    params = {"struct_cutoff": struct_cutoff, "comp_cutoff": comp_cutoff, "num_generated": n_all,
              "num_generated_with_fingerprints": len(s_prec), "num_reference": len(s_rec),
              "distance": "Euclidean (torch.cdist, float64)"}
    rec_items = {"struct_dist": s_rec, "comp_dist": c_rec, "covered": rec_hit}
    prec_items = {"struct_dist": s_prec, "comp_dist": c_prec, "covered": prec_hit}
    return {
        "cov_recall": MetricResult("cov_recall", as_float(rec_hit.mean()), params, rec_items),
        "cov_precision": MetricResult("cov_precision", as_float(prec_hit.sum() / n_all), params, prec_items),
        "amsd_recall": MetricResult("amsd_recall", as_float(s_rec.mean()), params),
        "amsd_precision": MetricResult("amsd_precision", as_float(s_prec.mean()), params),
        "amcd_recall": MetricResult("amcd_recall", as_float(c_rec.mean()), params),
        "amcd_precision": MetricResult("amcd_precision", as_float(c_prec.mean()), params),
    }


def coverage_single(generated, reference, cutoff: float, num_generated: int | None = None,
                    chunk: int = DEFAULT_CHUNK) -> dict[str, MetricResult]:
    """The same definitions with one feature set (plain vectors): x: (N, D) generated, y: (M, D) reference.

    Returns ``cov_recall``, ``cov_precision``, ``amd_recall``, ``amd_precision``.
    """
    prec, rec = nearest_distances(generated, reference, chunk)
    n_all = len(prec) if num_generated is None else int(num_generated)
    params = {"cutoff": cutoff, "num_generated": n_all, "num_reference": len(rec),
              "distance": "Euclidean (torch.cdist, float64)"}
    return {
        "cov_recall": MetricResult("cov_recall", as_float((rec <= cutoff).mean()), params,
                                   {"dist": rec}),
        "cov_precision": MetricResult("cov_precision", float((prec <= cutoff).sum() / n_all), params,
                                      {"dist": prec}),
        "amd_recall": MetricResult("amd_recall", as_float(rec.mean()), params),
        "amd_precision": MetricResult("amd_precision", as_float(prec.mean()), params),
    }
