"""pymatgen's ``StructureMatcher`` with CDVAE's tolerances by default (stol=0.5, angle_tol=10°, ltol=0.3), one
per tolerance triple: the matcher that matching (:mod:`genlowdim.metrics.matching`) and its duplicate search
(:mod:`genlowdim.metrics.dedup`) share."""
from __future__ import annotations

from functools import lru_cache

__all__ = ["STOL", "ANGLE_TOL", "LTOL", "matcher"]

STOL, ANGLE_TOL, LTOL = 0.5, 10.0, 0.3


@lru_cache(maxsize=8)
def matcher(stol: float = STOL, angle_tol: float = ANGLE_TOL, ltol: float = LTOL):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)
