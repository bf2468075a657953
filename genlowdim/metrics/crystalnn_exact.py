"""CrystalNN's neighbours of one site recomputed in pymatgen's own order and arithmetic: the path the fast
fingerprint (:mod:`genlowdim.metrics.crystalnn`) takes for a site whose value hangs on a tie. Also the
element data (electronegativity, covalent radius) and weight parameters both paths share.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from genlowdim.metrics.voronoi_faces import CORNERS, SEARCH_CUTOFF, NeedsReference, row_cross

__all__ = ["DIST_CUTOFFS", "X_DIFF_WEIGHT", "element_data", "exact_site_neighbours"]

DIST_CUTOFFS = (0.5, 1.0)
X_DIFF_WEIGHT = 3.0


@lru_cache(maxsize=None)
def element_data(symbol: str) -> tuple[float, float]:
    """(Pauling electronegativity or NaN, covalent radius or atomic radius) as CrystalNN reads them."""
    from pymatgen.core import Element
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    el = Element(symbol)
    x = el.X
    try:
        r = CovalentRadius.radius[symbol]
    except Exception:  # noqa: BLE001 - the same fallback as pymatgen's _get_default_radius
        r = el.atomic_radius
    return float(x), (float("nan") if r is None else float(r))


def exact_site_neighbours(structure, centre: int, species: list[str]):
    """CrystalNN's neighbours of one site recomputed in pymatgen's own order and arithmetic: the same
    sphere search and point order, one scipy ``Voronoi`` on them (with pymatgen's retry at a larger
    cutoff), the faces in Qhull's ridge and vertex order through pymatgen's ``solid_angle`` and
    ``vol_tetra``, then the weights scalar by scalar in CrystalNN's sequence of operations, so that
    ties in weight are broken, and 3-decimal rounding decided, exactly as the reference does.

    Returns (displacements (P, 3), rounded weights (P,)) sorted as CrystalNN sorts them."""
    from scipy.spatial import Voronoi

    lattice = structure.lattice
    matrix = lattice.matrix
    centre_coords = structure[centre].coords
    frac = structure.frac_coords
    max_cutoff = max(np.linalg.norm(lattice.get_cartesian_coords(c)) for c in CORNERS) + 0.01
    cutoff = SEARCH_CUTOFF
    while True:
        try:
            fcoords, dists, index, _ = lattice.get_points_in_sphere(frac, centre_coords, cutoff,
                                                                    zip_results=False)
            order = sorted(range(len(dists)), key=lambda k: dists[k])
            points = [np.dot(fcoords[k], matrix) for k in order]
            source = [int(index[k]) for k in order]
            voro = Voronoi(points)
            faces = []
            rp = voro.ridge_points                   # the order of pymatgen's ridge_dict
            for r in np.flatnonzero((rp[:, 0] == 0) | (rp[:, 1] == 0)):
                vind = voro.ridge_vertices[r]
                if -1 in vind:
                    raise RuntimeError("infinite vertex")
                faces.append((int(rp[r, 0] if rp[r, 1] == 0 else rp[r, 1]), vind))
            if not faces:
                raise NeedsReference("no Voronoi neighbours")
            break
        except RuntimeError as err:
            if cutoff >= max_cutoff:
                raise NeedsReference("Voronoi step fails") from err
            cutoff = min(cutoff * 2, max_cutoff + 0.001)
    vertices = voro.vertices
    centre_pt = points[0]
    omegas, areas = {}, {}
    for other, vind in faces:
        omegas[other], volume = _exact_fan(centre_pt, vertices[vind])
        face_dist = np.linalg.norm(centre_pt - points[other]) / 2
        areas[other] = 3 * volume / face_dist
    omega_max = max(omegas.values())
    entries = []                     # [other point, weight] in VoronoiNN's order, solid angle > 0
    for other, _ in faces:
        if omegas[other] > 0:
            entries.append([other, omegas[other] / omega_max])
    x_c = element_data(species[centre])[0]
    for e in entries:
        other = e[0]
        e[1] *= omegas[other] / areas[other]
        x_n = element_data(species[source[other]])[0]
        e[1] *= 1 if (math.isnan(x_c) or math.isnan(x_n)) else 1 + X_DIFF_WEIGHT * math.sqrt(abs(x_c - x_n) / 3.3)
    entries.sort(key=lambda e: e[1], reverse=True)
    if not entries or entries[0][1] == 0:
        return np.zeros((0, 3)), np.zeros(0)
    highest = entries[0][1]
    r_c = element_data(species[centre])[1]
    for e in entries:
        e[1] /= highest
        diameter = r_c + element_data(species[source[e[0]]])[1]
        dist = np.linalg.norm(centre_coords - points[e[0]])
        low, high = diameter + DIST_CUTOFFS[0], diameter + DIST_CUTOFFS[1]
        if dist <= low:
            factor = 1
        elif dist < high:
            factor = (math.cos((dist - low) / (high - low) * math.pi) + 1) * 0.5
        else:
            factor = 0
        e[1] *= factor
    entries.sort(key=lambda e: e[1], reverse=True)
    if entries[0][1] == 0:
        return np.zeros((0, 3)), np.zeros(0)
    kept = [(e[0], round(e[1], 3)) for e in entries]
    kept = [(o, w) for o, w in kept if w > 0]
    disp = np.array([points[o] - centre_coords for o, _ in kept]).reshape(-1, 3)
    return disp, np.array([w for _, w in kept], dtype=float)


def _exact_fan(centre: np.ndarray, verts: np.ndarray) -> tuple[float, float]:
    """Solid angle and fan volume of one face with the operations of pymatgen's ``solid_angle`` and
    ``vol_tetra`` (same dot products one by one, so the same bits; the element-wise differences and
    cross products are batched, which does not change them)."""
    disp = verts - centre
    r = [np.linalg.norm(x) for x in disp]
    cross = row_cross(disp[1:-1], disp[2:])
    rel = centre - verts[2:]
    vol_cross = row_cross(verts[0] - verts[2:], verts[1:-1] - verts[2:])
    angle, volume = 0, 0
    a0 = disp[0]
    for t in range(len(verts) - 2):
        i, j = t + 1, t + 2
        tp = np.abs(np.dot(a0, cross[t]))
        de = r[0] * r[i] * r[j] + r[j] * np.dot(a0, disp[i]) + r[i] * np.dot(a0, disp[j]) \
            + r[0] * np.dot(disp[i], disp[j])
        a = (0.5 * math.pi if tp > 0 else -0.5 * math.pi) if de == 0 else np.arctan(tp / de)
        angle += (a if a > 0 else a + math.pi) * 2
        volume += np.abs(np.dot(rel[t], vol_cross[t])) / 6
    return angle, volume
