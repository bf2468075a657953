"""Property statistics of CDVAE's generation task: Wasserstein-1 distances between a seeded subsample of
valid generated crystals and the reference set, of density (g/cm³), number of distinct elements and,
when a property predictor is given, the predicted property (``scipy.stats.wasserstein_distance``).

CDVAE draws 1,000 valid crystals with unseeded ``np.random.choice`` and stops when fewer are valid; here
the draw is seeded (``torch.randperm`` with a ``torch.Generator``) and, with fewer valid crystals than
requested, all valid ones are used (the count used is recorded).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from genlowdim.metrics.result import MetricResult, as_float
from genlowdim.metrics.structure import densities, num_elements


def seeded_subsample(valid_mask: np.ndarray, num: int, seed: int) -> np.ndarray:
    """Indices (sorted) of ``min(num, #valid)`` valid items drawn without replacement with ``seed``."""
    valid_idx = np.flatnonzero(np.asarray(valid_mask, dtype=bool))
    if len(valid_idx) <= num:
        return valid_idx
    gen = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(len(valid_idx), generator=gen)[:num].numpy()
    return np.sort(valid_idx[pick])


def crystal_quantities(structures: Sequence, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``density`` (g/cm³) and ``num_elems`` (distinct species), each (N,); with ``rows`` only those rows
    are computed and the others are NaN (e.g. the valid ones: an invalid entry may be ``None``)."""
    rows = np.arange(len(structures)) if rows is None else np.asarray(rows, int)
    out = {"density": np.full(len(structures), np.nan), "num_elems": np.full(len(structures), np.nan)}
    chosen = [structures[i] for i in rows]
    out["density"][rows] = densities(chosen)
    out["num_elems"][rows] = num_elements(chosen)
    return out


def _w1(name: str, gen_values: np.ndarray, ref_values: np.ndarray, params: dict) -> MetricResult:
    if len(gen_values) == 0 or len(ref_values) == 0:
        return MetricResult(name, None, dict(params, note="no values to compare"))
    value = wasserstein_distance(np.asarray(gen_values, float), np.asarray(ref_values, float))
    return MetricResult(name, as_float(value), params)


def property_statistics(structures: Sequence, valid_mask: np.ndarray, reference_structures: Sequence,
                        property_fn: Callable[[list], Sequence[float]] | None = None,
                        reference_properties: Sequence[float] | None = None,
                        num_samples: int = 1000, seed: int = 0, quantities: dict | None = None,
                        reference_quantities: dict | None = None) -> dict[str, MetricResult]:
    """``wdist_density``, ``wdist_num_elems`` and ``wdist_prop`` (None without ``property_fn``).

    structures: N generated crystals, valid_mask: (N,) bool; reference_structures: M crystals.
    property_fn: list of structures -> (len,) predicted property; it is applied to the subsample and,
    unless ``reference_properties`` (M,) is given, to the reference set too (CDVAE's choice).
    quantities / reference_quantities: :func:`crystal_quantities` of the generated (at least on the valid
    rows) / reference crystals, when already computed (several subsamples share them).
    """
    idx = seeded_subsample(valid_mask, num_samples, seed)
    sample = [structures[i] for i in idx]
    gen_q = crystal_quantities(sample) if quantities is None else {k: v[idx] for k, v in quantities.items()}
    ref_q = crystal_quantities(reference_structures) if reference_quantities is None else reference_quantities
    params = {"num_samples_requested": num_samples, "num_samples_used": len(idx),
              "num_valid": int(np.sum(valid_mask)), "num_reference": len(reference_structures),
              "seed": seed, "sampler": "torch.randperm(torch.Generator().manual_seed(seed))",
              "distance": "scipy.stats.wasserstein_distance (W1, uniform weights)"}
    out = {"wdist_density": _w1("wdist_density", gen_q["density"], ref_q["density"], dict(params, unit="g/cm^3")),
           "wdist_num_elems": _w1("wdist_num_elems", gen_q["num_elems"], ref_q["num_elems"], params)}
    if property_fn is None:
        out["wdist_prop"] = MetricResult("wdist_prop", None, dict(params, note="no property predictor"))
        return out
    gen_prop = np.asarray(property_fn(sample), dtype=float) if sample else np.array([])
    if reference_properties is None:
        ref_prop, source = np.asarray(property_fn(list(reference_structures)), dtype=float), "property_fn"
    else:
        ref_prop, source = np.asarray(reference_properties, dtype=float), "given"
    out["wdist_prop"] = _w1("wdist_prop", gen_prop, ref_prop,
                            dict(params, reference_property_source=source))
    out["wdist_prop"].per_item.update(sample_index=idx, generated=gen_prop, reference=ref_prop)
    return out
