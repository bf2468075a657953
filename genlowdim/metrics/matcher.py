"""pymatgen's ``StructureMatcher`` settings as one frozen object, :class:`MatchTolerances` (CDVAE's tolerances by
default: stol=0.5, angle_tol=10°, ltol=0.3, volumes scaled), and the matcher built from them, one per setting:
what matching (:mod:`genlowdim.metrics.matching`), its duplicate search (:mod:`genlowdim.metrics.dedup`) and the
cell-size errors (:mod:`genlowdim.metrics.cell_size`) share."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["STOL", "ANGLE_TOL", "LTOL", "MatchTolerances", "CDVAE_TOLERANCES", "matcher", "resolve_tolerances"]

STOL, ANGLE_TOL, LTOL = 0.5, 10.0, 0.3


@dataclass(frozen=True)
class MatchTolerances:
    """``StructureMatcher(stol, angle_tol, ltol, scale)``, other arguments at pymatgen's defaults (primitive
    cells, no supercells). stol: site tolerance in units of (volume per atom)^(1/3); angle_tol: degrees;
    ltol: fractional length tolerance; scale: both cells are rescaled to one volume before matching (pymatgen's
    and CDVAE's default), so a cell of the wrong size still matches (docs/metrics.md)."""
    stol: float = STOL
    angle_tol: float = ANGLE_TOL
    ltol: float = LTOL
    scale: bool = True

    def __post_init__(self):
        from genlowdim.config import FieldError, check_fields

        check_fields(self, stol="positive", angle_tol="positive", ltol="positive")
        if self.angle_tol >= 180:
            raise FieldError("MatchTolerances", "angle_tol", f"must be below 180 degrees, got {self.angle_tol!r}")
        if not isinstance(self.scale, bool):
            raise FieldError("MatchTolerances", "scale", f"must be true or false, got {self.scale!r}")

    def unscaled(self) -> "MatchTolerances":
        """The same tolerances with volume scaling off."""
        return dataclasses.replace(self, scale=False)

    def matcher(self):
        """The (cached) pymatgen ``StructureMatcher`` of these settings."""
        return matcher(self.stol, self.angle_tol, self.ltol, self.scale)

    def to_dict(self) -> dict:
        """The record written next to every number matched with these settings."""
        return {"stol": self.stol, "angle_tol_degrees": self.angle_tol, "ltol": self.ltol, "scale": self.scale,
                "matcher": "pymatgen StructureMatcher (other arguments at their defaults)"}


CDVAE_TOLERANCES = MatchTolerances()


def resolve_tolerances(tolerances: MatchTolerances | None = None, stol: float | None = None,
                       angle_tol: float | None = None, ltol: float | None = None) -> MatchTolerances:
    """One :class:`MatchTolerances` from a public function's arguments: ``tolerances`` or the loose floats
    (each defaulting to CDVAE's), not both."""
    floats = {k: v for k, v in (("stol", stol), ("angle_tol", angle_tol), ("ltol", ltol)) if v is not None}
    if tolerances is not None:
        if floats:
            raise ValueError(f"give tolerances= or {', '.join(floats)}=, not both")
        if not isinstance(tolerances, MatchTolerances):
            raise TypeError(f"tolerances must be a MatchTolerances, got {type(tolerances).__name__}")
        return tolerances
    return MatchTolerances(**{k: float(v) for k, v in floats.items()})


@lru_cache(maxsize=8)
def matcher(stol: float = STOL, angle_tol: float = ANGLE_TOL, ltol: float = LTOL, scale: bool = True):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if scale:   # the call the recorded figures were made with
        return StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)
    return StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol, scale=False)
