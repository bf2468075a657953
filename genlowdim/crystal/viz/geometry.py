"""What a cell picture shows, as numbers: the atoms drawn (the cell's atoms and their periodic images on the
cell's boundary) and the bonds between them. No drawing here, so that each count can be tested by
construction.

Bonds follow one stated rule, :data:`BOND_RULE`: two atoms are bonded when pymatgen's ``CrystalNN`` (default
settings) counts each as a neighbour of the other. Asking both ways keeps a bond symmetric (CrystalNN alone
may count O among Sr's twelve neighbours while O counts only its two Ti) and draws the coordination the
field draws: TiO6 octahedra in a perovskite, NaCl6 octahedra in rock salt, four bonds per atom in diamond.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np

BOUNDARY_TOL = 0.02   # fractional distance from a cell face within which an atom is drawn on both faces
MATCH_TOL = 1e-6      # fractional distance at which a bond's end is the drawn image of its atom
BOND_RULE = "bonds: mutual CrystalNN neighbours (pymatgen)"


def wrap(frac_coords) -> np.ndarray:
    """(N, 3) fractional coordinates in [0, 1); values within 1e-9 below 1 become 0 (they are the same
    point, and a stray 0.9999999999 would otherwise be drawn at the far face only)."""
    frac = np.mod(np.asarray(frac_coords, dtype=float), 1.0)
    frac[frac > 1.0 - 1e-9] = 0.0
    return frac


def boundary_images(frac_coords: np.ndarray, tol: float = BOUNDARY_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Atoms inside the cell plus their images on the cell's boundary.

    ``frac_coords``: (N, 3), wrapped into [0, 1). An atom within ``tol`` of a face is drawn on the
    opposite face too. Returns (M, 3) fractional coordinates and (M,) indices of the original atom each row
    shows; an atom at a corner appears 8 times, on an edge 4, on a face 2. The first row of each atom is the
    atom itself (shift 0)."""
    frac = wrap(frac_coords)
    rows, owners = [], []
    for i, f in enumerate(frac):
        shifts = [(0.0, 1.0) if x < tol else (0.0, -1.0) if x > 1.0 - tol else (0.0,) for x in f]
        for shift in itertools.product(*shifts):
            rows.append(f + np.array(shift))
            owners.append(i)
    return np.array(rows).reshape(-1, 3), np.array(owners, dtype=int)


def cell_bonds(structure, neighbours=None) -> np.ndarray:
    """(B, 5) int rows ``i, j, n1, n2, n3``: atom j shifted by the lattice vector n is bonded to atom i,
    positions taken in the wrapped cell (:func:`wrap`). Each bond once (i < j, or i = j with n > 0 in
    lexicographic order); the rule is :data:`BOND_RULE`. ``neighbours``: a pymatgen ``NearNeighbors``
    to use instead of ``CrystalNN()`` (the mutual condition still applies)."""
    from pymatgen.analysis.local_env import CrystalNN
    from pymatgen.core import Structure

    wrapped = Structure(structure.lattice, structure.species, wrap(structure.frac_coords))
    finder = neighbours if neighbours is not None else CrystalNN()
    with warnings.catch_warnings():   # "no oxidation states": CrystalNN falls back to covalent radii
        warnings.simplefilter("ignore")
        found = finder.get_all_nn_info(wrapped)
    directed = {(i, nn["site_index"], *map(int, np.round(nn["image"])))
                for i, entries in enumerate(found) for nn in entries}
    bonds = [b for b in directed if (b[1], b[0], -b[2], -b[3], -b[4]) in directed
             and b < (b[1], b[0], -b[2], -b[3], -b[4])]
    return np.array(sorted(bonds), dtype=int).reshape(-1, 5)


@dataclass(frozen=True)
class CellPicture:
    """What one cell picture draws, in fractional coordinates of the cell.

    rows: (M, 3) drawn atom positions; owners: (M,) the cell atom each row shows; full: (F, 2) pairs of rows
    joined by a whole bond; half: (H,) rows whose bond leaves the drawing, with half_ends: (H, 3) the
    bond's midpoint, where its drawn half ends."""

    rows: np.ndarray
    owners: np.ndarray
    full: np.ndarray
    half: np.ndarray
    half_ends: np.ndarray


def _find_row(rows: np.ndarray, owners: np.ndarray, atom: int, point: np.ndarray) -> int | None:
    hit = np.flatnonzero((owners == atom) & (np.abs(rows - point).max(axis=1) < MATCH_TOL))
    return int(hit[0]) if len(hit) else None


def picture(frac_coords: np.ndarray, bonds: np.ndarray, tol: float = BOUNDARY_TOL) -> CellPicture:
    """The drawn atoms (:func:`boundary_images`) and bonds of a cell with ``bonds`` from :func:`cell_bonds`.

    A bond is drawn whole when both its atoms are drawn. An atom drawn once (inside the cell, off its
    boundary) also shows each bond to an atom outside the drawing, up to the bond's midpoint, so that its
    coordination is complete; atoms on the boundary show only whole bonds (their outside neighbours
    belong to the next cell's picture)."""
    frac = wrap(frac_coords)
    rows, owners = boundary_images(frac, tol)
    drawn_once = np.bincount(owners, minlength=len(frac)) == 1
    ends = [(i, j, frac[j] + n - frac[i]) for i, j, *n in bonds.tolist()]
    ends += [(j, i, -d) for i, j, d in ends]   # each bond seen from both of its atoms
    full, half, half_ends = set(), [], []
    for r, (row, atom) in enumerate(zip(rows, owners)):
        for i, j, d in ends:
            if i != atom:
                continue
            other = _find_row(rows, owners, j, row + d)
            if other is not None:
                full.add((min(r, other), max(r, other)))
            elif drawn_once[atom]:
                half.append(r)
                half_ends.append(row + d / 2)
    return CellPicture(rows, owners, np.array(sorted(full), dtype=int).reshape(-1, 2),
                       np.array(half, dtype=int), np.array(half_ends, dtype=float).reshape(-1, 3))
