"""Ranking structure-prediction candidates by relaxed energy, for ``csp --relax``.

Candidates of one formula arrive in the model's order (formula NLL, best first). :func:`rank_by_energy`
reorders them by relaxed energy per atom, but a candidate within ``margin`` eV/atom of the lowest remaining
one never overtakes a candidate the model ranked higher: energies that close are within the potential's
noise, and the model's order is kept. Candidates without an energy (failed relaxation) go last, in the
model's order.
"""
from __future__ import annotations

import math
from typing import Sequence

__all__ = ["rank_by_energy", "TIE_MARGIN"]

TIE_MARGIN = 0.005   # eV/atom


def rank_by_energy(energies: Sequence[float | None], margin: float = TIE_MARGIN) -> list[int]:
    """Indices of the candidates, best first. energies: relaxed energy per atom (eV/atom) of each
    candidate in the model's order; None/NaN for a failed one. Greedy: the next pick is the first (in the
    model's order) of the remaining candidates within ``margin`` of the lowest remaining energy."""
    if margin < 0:
        raise ValueError(f"margin {margin}: must be >= 0 eV/atom")
    have = [i for i, e in enumerate(energies) if e is not None and math.isfinite(e)]
    order: list[int] = []
    while have:
        lowest = min(energies[i] for i in have)
        pick = next(i for i in have if energies[i] <= lowest + margin)
        order.append(pick)
        have.remove(pick)
    return order + [i for i in range(len(energies)) if i not in order]
