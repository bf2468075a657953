"""Structural validity (CDVAE ``structure_validity``) and simple per-structure quantities.

A crystal is structurally valid when every interatomic distance between distinct atoms, taken with the
minimum-image convention, is at least ``min_distance`` (0.5 Å) and the cell volume is at least
``min_volume`` (0.1 Å³). Like CDVAE, an atom's distance to its own periodic images is not checked.
Invalid crystals keep one reason: ``construction_failed`` (no structure could be built: ``None`` input,
non-finite or degenerate lattice), ``tiny_cell`` (volume < min_volume; checked first, as CDVAE does) or
``too_close``.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Sequence

import numpy as np

from genlowdim.metrics.result import MetricResult, versions

MIN_DISTANCE = 0.5  # Å, CDVAE eval_utils.structure_validity cutoff
MIN_VOLUME = 0.1  # Å^3, CDVAE Crystal.get_structure
REASONS = ("construction_failed", "tiny_cell", "too_close")


def min_interatomic_distance(structure) -> float:
    """Smallest minimum-image distance (Å) between two distinct sites; ``inf`` for one-atom cells."""
    if len(structure) < 2:
        return float("inf")
    dist = np.array(structure.distance_matrix, dtype=float)  # pymatgen: minimum image over lattice images
    np.fill_diagonal(dist, np.inf)
    return float(dist.min())


def validity_reason(structure, min_distance: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME
                    ) -> tuple[str | None, float]:
    """``(reason or None, minimum distance in Å)`` for one structure (``None`` structure allowed)."""
    if structure is None:
        return "construction_failed", float("nan")
    try:
        matrix = np.asarray(structure.lattice.matrix, dtype=float)
        if not np.isfinite(matrix).all() or not np.isfinite(structure.frac_coords).all():
            return "construction_failed", float("nan")
        if abs(np.linalg.det(matrix)) < min_volume:
            return "tiny_cell", float("nan")
        dmin = min_interatomic_distance(structure)
    except Exception:  # noqa: BLE001 - any failure to evaluate the cell means it cannot be used
        return "construction_failed", float("nan")
    return ("too_close" if dmin < min_distance else None), dmin


def structural_validity(structures: Sequence, min_distance: float = MIN_DISTANCE,
                        min_volume: float = MIN_VOLUME) -> MetricResult:
    """CDVAE ``struct_valid``: fraction of structures that pass both checks.

    structures: N pymatgen ``Structure`` objects (``None`` for entries that could not be built).
    per_item: ``valid: (N,) bool``, ``reason: (N,) str`` ('' when valid), ``min_distance: (N,)`` in Å.
    """
    out = [validity_reason(s, min_distance, min_volume) for s in structures]
    reasons = np.array([r or "" for r, _ in out], dtype=object)
    valid = reasons == ""
    counts = Counter(r for r, _ in out if r)
    params = {"min_distance_angstrom": min_distance, "min_volume_angstrom3": min_volume,
              "num_structures": len(structures), "num_valid": int(valid.sum()),
              "invalid_reasons": {k: int(counts.get(k, 0)) for k in REASONS},
              "distance_convention": "minimum image, distinct sites only (pymatgen distance_matrix)",
              "versions": versions()}
    value = float(valid.mean()) if len(valid) else None
    return MetricResult("struct_valid", value, params,
                        {"valid": valid, "reason": reasons,
                         "min_distance": np.array([d for _, d in out], dtype=float)})


def densities(structures: Sequence) -> np.ndarray:
    """Mass density in g/cm³ of each structure, shape (N,): pymatgen's ``Structure.density`` with its two
    unit conversion factors computed once (the same float operations, so the same numbers, ~50x faster)."""
    grams_per_amu, cm3_per_a3 = _density_factors()
    return np.array([s.composition.weight * grams_per_amu / (s.volume * cm3_per_a3) for s in structures],
                    dtype=float)


@lru_cache(maxsize=1)
def _density_factors() -> tuple[float, float]:
    """(g per amu, cm³ per Å³) exactly as ``Structure.density`` obtains them."""
    from pymatgen.core.units import Length, Mass

    return float(Mass(1.0, "amu").unit.get_conversion_factor("g")), float(Length(1, "ang").to("cm") ** 3)


def num_elements(structures: Sequence) -> np.ndarray:
    """Number of distinct species in each structure (CDVAE ``len(set(structure.species))``), shape (N,)."""
    return np.array([len(set(s.species)) for s in structures], dtype=float)
