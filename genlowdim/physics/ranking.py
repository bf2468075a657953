"""Ranking structure-prediction candidates by relaxed energy, for ``csp --relax``.

Candidates of one formula arrive in the model's order (formula NLL, best first). :func:`rank_by_energy`
reorders them by relaxed energy per atom, but a candidate within ``margin`` eV/atom of the lowest remaining
one never overtakes a candidate the model ranked higher: energies that close are within the potential's
noise, and the model's order is kept. Candidates without an energy (failed relaxation) go last, in the
model's order. :func:`rank_by_arrangement` first names an arrangement among the highest-symmetry candidates
by energy and keeps each arrangement's candidates together (``csp --relax``'s default, chosen on val:
docs/physics.md).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

__all__ = ["rank_by_energy", "rank_by_arrangement", "TIE_MARGIN", "RANKINGS"]

TIE_MARGIN = 0.005   # eV/atom
RANKINGS = ("arrangement", "energy")


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


def rank_by_arrangement(energies: Sequence[float | None], symmetry_orders: Sequence[int],
                        same: Callable[[int, int], bool], margin: float = TIE_MARGIN) -> list[int]:
    """Indices of the candidates, best first, whole arrangements at a time.

    Repeatedly: among the remaining candidates of the highest symmetry order (point-group operations),
    the lowest in energy (:func:`rank_by_energy`'s margin rule) names an arrangement; every remaining
    candidate that ``same(i, that one)`` then follows, lowest energy first, so that the arrangement is
    represented by its lowest-energy member (a distorted cell of it, if that relaxed lower). Energy thus
    decides between the arrangements of the prototype frames (e.g. perovskite twins with the cations
    swapped), while a lower-symmetry cell that relaxed into another, unrelated minimum cannot outrank
    them. ``same(i, j)``: whether candidates i and j are one structure (e.g. pymatgen's StructureMatcher).
    Candidates without an energy go last, in the model's order."""
    have = [i for i, e in enumerate(energies) if e is not None and math.isfinite(e)]
    order: list[int] = []
    while have:
        highest = max(symmetry_orders[i] for i in have)
        top = [i for i in have if symmetry_orders[i] == highest]
        named = top[rank_by_energy([energies[i] for i in top], margin)[0]]
        group = [i for i in have if i == named or same(i, named)]
        order += [group[j] for j in rank_by_energy([energies[i] for i in group], margin)]
        have = [i for i in have if i not in group]
    return order + [i for i in range(len(energies)) if i not in order]
