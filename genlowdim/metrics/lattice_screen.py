"""A necessary condition for ``StructureMatcher.fit``: the lattice step, done once per crystal.

``fit(s1, s2)`` (default ``scale=True``, no supercells) reduces both crystals, rescales them to one
volume, and then only looks at sites for the lattices that ``s1.lattice.find_all_mappings(s2.lattice,
ltol, angle_tol)`` yields with a unimodular integer matrix (``|det| = 1``). No such lattice: no match.
A lattice qualifies when it is a basis (a', b', c') of s1's lattice with

    1 / (1 + ltol) < |a'| / a2 < 1 + ltol   (same for b', c'),   |angle(b', c') - alpha2| <= angle_tol, ...

where a2, b2, c2, alpha2, ... are s2's reduced cell. Both tests are ratios of lengths and angles, so they
do not change when a lattice is scaled: each crystal's lattice is normalised to unit volume once
(:func:`lattice_shape`), its lattice vectors up to a radius listed once, and :func:`may_match` repeats the
matcher's search on these lists (a few tens of µs instead of the matcher's ~1 ms). The search is looser
than the matcher's by ``LENGTH_SLACK`` (relative) and ``ANGLE_SLACK_DEGREES`` so that rounding can only
let a pair through, never drop one the matcher would accept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LENGTH_SLACK = 1e-9           # relative, on the ltol window
ANGLE_SLACK_DEGREES = 1e-4    # arccos near 0 or 180 degrees amplifies rounding to ~1e-6 degrees
CHUNK = 4096                  # (a, b) candidate pairs tested at once
MAX_RADIUS = 12.0             # in units of the cube root of the cell volume (about 7,000 lattice points)


@dataclass(frozen=True)
class LatticeShape:
    """A reduced cell at unit volume. lengths: (3,) a, b, c / V^(1/3); angles: (3,) alpha, beta, gamma in
    degrees; points: (M, 3) Cartesian lattice vectors with norms in (0, radius], sorted by norm; norms: (M,);
    ints: (M, 3) their integer coordinates in the cell's basis."""

    lengths: np.ndarray
    angles: np.ndarray
    points: np.ndarray
    norms: np.ndarray
    ints: np.ndarray
    radius: float


def lattice_shape(matrix: np.ndarray, radius: float) -> LatticeShape:
    """The shape of the lattice with rows ``matrix`` (3, 3) in Å, listing vectors up to ``radius`` (in
    units of V^(1/3), capped at ``MAX_RADIUS``; a partner that needs more is never pruned)."""
    from pymatgen.core import Lattice

    lattice = Lattice(matrix)
    unit = np.asarray(lattice.matrix, float) / abs(lattice.volume) ** (1 / 3)
    radius = float(min(radius, MAX_RADIUS))
    # |n_i| <= radius * |row i of the reciprocal basis| bounds every vector of norm <= radius
    bound = np.ceil(radius * np.linalg.norm(np.linalg.inv(unit).T, axis=1)).astype(int)
    axes = [np.arange(-b, b + 1) for b in bound]
    ints = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    points = ints @ unit
    norms = np.linalg.norm(points, axis=1)
    keep = (norms > 0) & (norms <= radius)
    order = np.argsort(norms[keep], kind="stable")
    return LatticeShape(np.asarray(lattice.abc, float) / abs(lattice.volume) ** (1 / 3),
                        np.asarray(lattice.angles, float), points[keep][order], norms[keep][order],
                        ints[keep][order], radius)


def _window(shape: LatticeShape, length: float, ltol: float) -> slice:
    """Vectors of ``shape`` whose norm / length lies in the (slightly widened) open ltol window."""
    hi = (1 + ltol) * (1 + LENGTH_SLACK)
    lo_idx = np.searchsorted(shape.norms, length / hi, side="left")
    hi_idx = np.searchsorted(shape.norms, length * hi, side="right")
    return slice(int(lo_idx), int(hi_idx))


def _angles_close(u: np.ndarray, v: np.ndarray, target: float, tol: float) -> np.ndarray:
    """(len(u), len(v)) bool: the angle between u[i] and v[j] is within tol of target (degrees)."""
    cos = (u @ v.T) / np.linalg.norm(u, axis=1)[:, None] / np.linalg.norm(v, axis=1)[None, :]
    return np.abs(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) - target) <= tol


def may_match(s1: LatticeShape, s2: LatticeShape, ltol: float, angle_tol: float) -> bool:
    """False only when s1's lattice has no unimodular basis within (ltol, angle_tol) of s2's reduced cell,
    i.e. when ``StructureMatcher.fit(s1, s2)`` is certainly False. Order matters, as in ``fit``."""
    if np.max(s2.lengths) * (1 + ltol) * (1 + LENGTH_SLACK) > s1.radius:
        return True  # s1's list is too short to decide
    windows = [_window(s1, length, ltol) for length in s2.lengths]
    if any(w.start >= w.stop for w in windows):
        return False
    (ca, fa), (cb, fb), (cc, fc) = ((s1.points[w], s1.ints[w]) for w in windows)
    tol = angle_tol + ANGLE_SLACK_DEGREES
    alpha, beta, gamma = s2.angles
    ok_ab = _angles_close(ca, cb, gamma, tol)
    ok_ac = _angles_close(ca, cc, beta, tol)
    ok_bc = _angles_close(cb, cc, alpha, tol)
    ia, ib = np.nonzero(ok_ab)
    for start in range(0, len(ia), CHUNK):   # (a, b) pairs in chunks: na * nb * nc can be large
        a, b = ia[start:start + CHUNK], ib[start:start + CHUNK]
        rows, ic = np.nonzero(ok_ac[a] & ok_bc[b])
        if len(rows) == 0:
            continue
        dets = np.linalg.det(np.stack([fa[a[rows]], fb[b[rows]], fc[ic]], axis=1).astype(float))
        if np.any(np.abs(np.rint(dets)) == 1):
            return True
    return False
