"""Exact fast CrystalNN "ops" fingerprint: matminer's ``CrystalNNFingerprint.from_preset("ops")``, site
features averaged, computed in vectorised numpy, with the reference implementation taking over every
site whose value could hang on a floating-point tie.

The chain per site (pymatgen's ``CrystalNN.get_nn_data`` with its defaults, then matminer):

1. Voronoi cell of the site among all periodic images within 7 Å. Here as the convex hull of the polar
   duals 2d/|d|² of the neighbour displacements d (hull facets are the cell's vertices, hull vertices its
   faces), first from the images within a smaller radius r0; the cell is the one of the 7 Å set when its
   largest vertex distance R satisfies 2R < r0 (every point farther than 2R is irrelevant), otherwise the
   7 Å set itself is used (a bounded cell of that set is pymatgen's cell, even when it reaches past
   7 Å); a clearly unbounded cell is recomputed at pymatgen's retry cutoff.
2. Per face: solid angle (fan of triangles from the first vertex, 2·atan per triangle), fan volume,
   area = 3V/(|d|/2); weight = Ω/Ω_max · Ω/area · (1 + 3·sqrt(|Δχ|/3.3)), divided by its maximum,
   times the covalent-radius distance factor, then numpy-rounded to 3 decimals; nested neighbour sets
   for the distinct weights with the unit-semicircle weights.
3. Order parameters of each set with CN 1..12 (``order_params``), times the set's weight.

Guards. Recomputed through pymatgen's exact Voronoi arithmetic (``exact_site_neighbours``): a face with
three collinear vertices (pymatgen adds 2π for a fan triangle of exactly zero height), a weight with
|1000·w − (k + ½)| < 1e-6 before rounding, a point on the search sphere, a cell on the edge of being
unbounded, tied neighbours whose order changes the bcc value. Recomputed by matminer: an angle within
1e-9 of an order-parameter threshold or an ill-conditioned azimuth axis, a non-finite weight, a cell
still unbounded at the retry cutoff, a structure with oxidation states, disorder or coincident atoms
(whole structure), and any exception.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.spatial import ConvexHull

from genlowdim.metrics.order_params import Geometry, bcc_order_unknown, ops_layout, order_parameter

SEARCH_CUTOFF = 7.0
DIST_CUTOFFS = (0.5, 1.0)
X_DIFF_WEIGHT = 3.0
ROUND_BAND = 1e-6
SPHERE_BAND = 1e-6      # a point this close to the search sphere may or may not be in pymatgen's set
ORDER_BAND = 1e-9       # weights closer than this may be ordered either way by the reference
CORNERS = ([1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1])
FAN_REL_TOL = 1e-10
STRUCT_DIM = 61


@dataclass
class FastStats:
    """Counts of how the sites were computed."""

    sites: int = 0
    fallback_sites: int = 0
    fallback_structures: int = 0
    replayed_sites: int = 0
    reasons: dict = field(default_factory=dict)

    def add_reason(self, reason: str, n: int = 1) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + n

    def merge(self, other: "FastStats") -> None:
        self.sites += other.sites
        self.fallback_sites += other.fallback_sites
        self.fallback_structures += other.fallback_structures
        self.replayed_sites += other.replayed_sites
        for k, v in other.reasons.items():
            self.add_reason(k, v)


class NeedsReference(Exception):
    """The fast path cannot vouch for this site; the reason names the guard."""


@lru_cache(maxsize=None)
def _element_data(symbol: str) -> tuple[float, float]:
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


@lru_cache(maxsize=1)
def _layout_index():
    """Feature offsets: {cn: (offset of 'wt', [(offset, type, params), ...])} for cn 1..24."""
    out, off = {}, 0
    for cn, entries in ops_layout():
        ops = []
        wt_off = off
        off += 1
        for typ, params in entries[1:]:
            ops.append((off, typ, params))
            off += 1
        out[cn] = (wt_off, ops)
    assert off == STRUCT_DIM, off
    return out


def _semicircle(x1: float, x2: float) -> float:
    def area(x: float) -> float:
        return 0.5 * (x * math.sqrt(1 - x * x) + math.atan(x / math.sqrt(1 - x * x)))

    a1 = 0.25 * math.pi if x1 == 1 else area(x1)
    return (a1 - area(x2)) / (0.25 * math.pi)


def _images(lattice: np.ndarray, frac: np.ndarray, cutoff: float, centres=None):
    """Per centre i (all sites, or ``centres``): displacements (M_i, 3) to every image of every site
    within ``cutoff`` (plus SPHERE_BAND), their source-site indices (M_i,) and distances (M_i,), self
    excluded."""
    centres = np.arange(len(frac)) if centres is None else np.asarray(centres)
    inv = np.linalg.inv(lattice)
    # planes spacing: 1/|column of inv| ; images needed per axis
    reach = np.ceil(cutoff * np.linalg.norm(inv, axis=0)).astype(int) + 1
    rng = [np.arange(-r, r + 1) for r in reach]
    t = np.stack(np.meshgrid(*rng, indexing="ij"), -1).reshape(-1, 3).astype(float)
    df = frac[None, :, :] - frac[centres, None, :]                 # (i, s, 3)
    df = df - np.round(df)
    d = (df[:, :, None, :] + t[None, None, :, :]) @ lattice        # (i, s, T, 3) cartesian
    dist = np.sqrt(np.einsum("istd,istd->ist", d, d))
    src = np.broadcast_to(np.arange(len(frac))[None, :, None], dist.shape)
    out = []
    for k in range(len(centres)):
        keep = dist[k] <= cutoff + SPHERE_BAND
        di, si, ri = d[k][keep], src[k][keep], dist[k][keep]
        selfmask = ri < 1e-8
        if selfmask.sum() != 1:
            raise NeedsReference("coincident atoms")
        out.append((di[~selfmask], si[~selfmask], ri[~selfmask]))
    return out


def retry_cutoff(lattice: np.ndarray) -> float | None:
    """The cutoff pymatgen's Voronoi step retries with when the cell of the 7 Å set is unbounded (or
    Qhull fails): min(2·7, longest cell diagonal + 0.011); None when it gives up at once instead."""
    max_cutoff = max(float(np.linalg.norm(np.dot(c, lattice))) for c in CORNERS) + 0.01
    if SEARCH_CUTOFF >= max_cutoff:
        return None
    return min(SEARCH_CUTOFF * 2, max_cutoff + 0.001)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (K, 3) arrays: np.cross's element-wise formula (the same products and
    differences, so the same bits) without its per-call overhead."""
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    return np.stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), axis=1)


def _run_starts(x: np.ndarray) -> np.ndarray:
    """Indices where a new run of equal values starts in ``x``."""
    new = np.ones(len(x), dtype=bool)
    new[1:] = x[1:] != x[:-1]
    return np.flatnonzero(new)


def _cells(point_sets: list[np.ndarray]) -> list:
    """Voronoi cell of the origin among each point set ``d`` (M, 3), via the dual convex hull: per set,
    (face point indices (P,), solid angles (P,), fan volumes (P,), max vertex distance R), or the
    ``NeedsReference`` instance that stops it.

    One ``ConvexHull`` per set; everything after the hull runs once over the rows of all sets (points,
    faces and vertices carry global indices), which removes the per-site cost of ~80 small numpy calls.
    Every row's arithmetic is the per-set arithmetic, so the values are the same bits."""
    out: list = [None] * len(point_sets)
    hulls = []
    for k, d in enumerate(point_sets):
        q = d * (2.0 / np.einsum("md,md->m", d, d))[:, None]
        try:
            hull = ConvexHull(q)
        except Exception as err:  # noqa: BLE001 - Qhull precision / flat input
            exc = NeedsReference("qhull")
            exc.__cause__ = err
            out[k] = exc
            continue
        eq = hull.equations
        if (eq[:, 3] > 1e-9).any():
            out[k] = Unbounded("unbounded cell")
        elif (eq[:, 3] > -1e-12).any():
            out[k] = NeedsExactFaces("nearly unbounded cell")
        else:
            hulls.append((k, d, eq, hull.simplices))
    if not hulls:
        return out
    ids = [h[0] for h in hulls]
    n_pts = np.array([len(h[1]) for h in hulls])
    n_fac = np.array([len(h[2]) for h in hulls])
    pt_off = np.concatenate(([0], np.cumsum(n_pts)[:-1]))
    fc_off = np.concatenate(([0], np.cumsum(n_fac)[:-1]))
    d = np.concatenate([h[1] for h in hulls])
    eq = np.concatenate([h[2] for h in hulls])
    cell_of_pt = np.repeat(np.arange(len(hulls)), n_pts)
    verts = -eq[:, :3] / eq[:, 3:4]                                 # (F, 3) Voronoi vertices
    vdist = np.sqrt(np.einsum("fd,fd->f", verts, verts))
    radius = np.maximum.reduceat(vdist, fc_off)
    simp = np.concatenate([h[3] + pt_off[c] for c, h in enumerate(hulls)])
    p_idx = simp.ravel()
    f_idx = np.repeat(np.arange(len(simp)), 3)
    # order each face's vertices around the face normal
    cnt = np.maximum(np.bincount(p_idx, minlength=len(d)), 1).astype(float)
    v = verts[f_idx]
    cen = np.stack([np.bincount(p_idx, weights=v[:, c], minlength=len(d)) for c in range(3)], axis=1)
    cen /= cnt[:, None]
    nrm = d / np.linalg.norm(d, axis=1)[:, None]
    helper = np.where((np.abs(nrm[:, 0]) < 0.9)[:, None], np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    e1 = _cross(nrm, helper)
    e1 /= np.linalg.norm(e1, axis=1)[:, None]
    e2 = _cross(nrm, e1)
    rel = v - cen[p_idx]
    ang = np.arctan2(np.einsum("kd,kd->k", rel, e2[p_idx]), np.einsum("kd,kd->k", rel, e1[p_idx]))
    order = np.lexsort((ang, p_idx))
    p_s, v_s = p_idx[order], v[order]
    # drop repeated vertices (coplanar dual facets give the same Voronoi vertex several times)
    scale = np.maximum(radius, 1.0)[cell_of_pt[p_s]]
    same = np.zeros(len(p_s), dtype=bool)
    same[1:] = (p_s[1:] == p_s[:-1]) & (np.abs(v_s[1:] - v_s[:-1]).max(axis=1) < 1e-9 * scale[1:])
    p_s, v_s, scale = p_s[~same], v_s[~same], scale[~same]
    starts = _run_starts(p_s)
    ends = np.append(starts[1:], len(p_s))
    # wrap-around duplicate (last equals first)
    last_dup = np.abs(v_s[ends - 1] - v_s[starts]).max(axis=1) < 1e-9 * scale[starts]
    keep = np.ones(len(p_s), dtype=bool)
    keep[(ends - 1)[last_dup & (ends - starts > 1)]] = False
    p_s, v_s = p_s[keep], v_s[keep]
    starts = _run_starts(p_s)
    sizes = np.diff(np.append(starts, len(p_s)))
    group = np.repeat(np.arange(len(starts)), sizes)
    pos = np.arange(len(p_s)) - starts[group]
    tri = (pos >= 1) & (pos <= sizes[group] - 2)
    t_i = np.flatnonzero(tri)
    a0 = v_s[starts[group[t_i]]]
    aj = v_s[t_i]
    ak = v_s[t_i + 1]
    # three collinear vertices anywhere on a polygon give a zero-height fan triangle for some first
    # vertex, and Qhull's first vertex is not known here: test every consecutive (cyclic) triple
    big = sizes[group] >= 3
    prev = starts[group] + (pos - 1) % sizes[group]
    nxt = starts[group] + (pos + 1) % sizes[group]
    norm = np.sqrt(np.einsum("kd,kd->k", v_s, v_s))
    turn = np.abs(np.einsum("kd,kd->k", v_s[prev], _cross(v_s, v_s[nxt])))
    flat_rows = big & (turn <= FAN_REL_TOL * norm[prev] * norm * norm[nxt])
    flat = np.zeros(len(hulls), dtype=bool)
    flat[cell_of_pt[p_s[flat_rows]]] = True
    tp = np.abs(np.einsum("kd,kd->k", a0, _cross(aj, ak)))
    r0, rj, rk = norm[starts[group[t_i]]], norm[t_i], norm[t_i + 1]
    de = r0 * rj * rk + rk * np.einsum("kd,kd->k", a0, aj) + rj * np.einsum("kd,kd->k", a0, ak) \
        + r0 * np.einsum("kd,kd->k", aj, ak)
    with np.errstate(divide="ignore"):
        a = np.where(de == 0, 0.5 * math.pi, np.arctan(tp / np.where(de == 0, 1.0, de)))
    a = np.where(a > 0, a, a + math.pi) * 2.0
    g_t = group[t_i]
    omega = np.bincount(g_t, weights=a, minlength=len(starts))
    vol = np.bincount(g_t, weights=tp / 6.0, minlength=len(starts))
    faces = p_s[starts]
    ok = sizes >= 3
    faces, omega, vol = faces[ok], omega[ok], vol[ok]
    bounds = np.searchsorted(cell_of_pt[faces], np.arange(len(hulls) + 1))
    for c, k in enumerate(ids):
        if flat[c]:
            out[k] = FlatFace("flat fan triangle")
            continue
        sl = slice(bounds[c], bounds[c + 1])
        out[k] = (faces[sl] - pt_off[c], omega[sl], vol[sl], float(radius[c]))
    return out


class NeedsExactFaces(NeedsReference):
    """The site's value hangs on the exact arithmetic or order of pymatgen's Voronoi step (a fan
    triangle of zero height, a rounding tie, tied weights that the bcc parameter sees, a point on the
    search sphere): its faces are recomputed as pymatgen computes them (``exact_site_neighbours``)."""


class Unbounded(NeedsReference):
    """The site's cell among the images within the cutoff is unbounded: pymatgen retries with a larger
    cutoff."""


class FlatFace(NeedsExactFaces):
    """A face polygon with three collinear vertices: pymatgen's fan adds 2π for a triangle whose
    computed height is exactly zero, which depends on Qhull's vertex order, so the faces of this site
    are taken from pymatgen's own Voronoi step."""


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
    x_c = _element_data(species[centre])[0]
    for e in entries:
        other = e[0]
        e[1] *= omegas[other] / areas[other]
        x_n = _element_data(species[source[other]])[0]
        e[1] *= 1 if (math.isnan(x_c) or math.isnan(x_n)) else 1 + X_DIFF_WEIGHT * math.sqrt(abs(x_c - x_n) / 3.3)
    entries.sort(key=lambda e: e[1], reverse=True)
    if not entries or entries[0][1] == 0:
        return np.zeros((0, 3)), np.zeros(0)
    highest = entries[0][1]
    r_c = _element_data(species[centre])[1]
    for e in entries:
        e[1] /= highest
        diameter = r_c + _element_data(species[source[e[0]]])[1]
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
    cross = _cross(disp[1:-1], disp[2:])
    rel = centre - verts[2:]
    vol_cross = _cross(verts[0] - verts[2:], verts[1:-1] - verts[2:])
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


def site_neighbours(d: np.ndarray, src: np.ndarray, dist: np.ndarray, species: list[str], centre: int,
                    lattice: np.ndarray | None = None, frac: np.ndarray | None = None, faces=None):
    """CrystalNN's rounded neighbour weights of one site on the fast path.

    Returns (displacements (P, 3), rounded weights (P,), uncertain (P, P)) for the neighbours with
    positive weight, sorted by weight (descending); ``uncertain[a, b]`` marks pairs whose relative order
    the reference may break either way (tied weights, ties broken by Qhull's ridge order). Raises
    ``NeedsExactFaces`` or ``NeedsReference`` when it cannot vouch for the result. With ``lattice`` and
    ``frac`` an unbounded cell is retried at pymatgen's larger cutoff. ``faces``: this site's entry of
    :func:`_own_faces_many` when it was computed in a batch."""
    if faces is None:
        faces = _own_faces_many([(d, src, dist)], SEARCH_CUTOFF)[0]
    if isinstance(faces, Unbounded):
        cutoff = None if lattice is None else retry_cutoff(lattice)
        if cutoff is None:
            raise NeedsReference("unbounded cell, no retry")
        faces = _own_faces_many(_images(lattice, frac, cutoff, [centre]), cutoff)[0]
        if isinstance(faces, Unbounded):
            raise NeedsReference("unbounded cell at the retry cutoff")
    if isinstance(faces, Exception):
        raise faces
    return _weights(*faces, species, centre)


def _own_faces_many(sites: list, cutoff: float) -> list:
    """Per site (d, src, dist): its Voronoi faces (displacements, sources, distances, solid angles, areas)
    or the ``NeedsReference`` instance that stops it.

    Each cell is first taken from the points within min(cutoff, max(3·d_nn, 4)) Å; it is exact when twice
    its largest vertex distance is below that radius (a farther point cannot cut it), otherwise it is
    recomputed from the whole ``cutoff`` set. Each round computes the cells of all its sites in one
    :func:`_cells` call."""
    prepared, radius = [], []
    for d, src, dist in sites:
        order = np.argsort(dist, kind="stable")
        prepared.append((d[order], src[order], dist[order]))
        nn_dist = prepared[-1][2][0] if len(dist) else 0.0
        radius.append(min(cutoff, max(3.0 * nn_dist, 4.0)))
    out: list = [None] * len(sites)
    pending = list(range(len(sites)))
    while pending:
        todo, point_sets, again = [], [], []
        for i in pending:
            sel = prepared[i][2] <= radius[i]
            if sel.sum() < 4:
                if radius[i] >= cutoff:
                    out[i] = NeedsReference("fewer than 4 points in the search sphere")
                else:
                    radius[i] = cutoff
                    again.append(i)
                continue
            todo.append((i, sel))
            point_sets.append(prepared[i][0][sel])
        for (i, sel), cell in zip(todo, _cells(point_sets)):
            r0 = radius[i]
            if isinstance(cell, Exception):
                if r0 >= cutoff:
                    out[i] = cell
                else:
                    radius[i] = cutoff
                    again.append(i)
                continue
            d, src, dist = prepared[i]
            if not 2.0 * cell[3] < r0 - SPHERE_BAND:
                if r0 < cutoff:
                    radius[i] = cutoff
                    again.append(i)
                    continue
                # the cell of the whole sphere is the reference's cell, unless a point on the sphere's
                # surface (which pymatgen may or may not include) could cut it
                if (np.abs(dist - cutoff) <= SPHERE_BAND).any():
                    out[i] = NeedsExactFaces("point on the search sphere")
                    continue
            faces, omega, vol, _ = cell
            faces = np.flatnonzero(sel)[faces]
            fdist = dist[faces]
            out[i] = (d[faces], src[faces], fdist, omega, 3.0 * vol / (fdist / 2.0))
        pending = again
    return out


def _weights(fd, fsrc, fdist, omega, area, species, centre):
    w = omega / omega.max()
    w = w * (omega / area)
    x_c, r_c = _element_data(species[centre])
    xr = np.array([_element_data(species[s]) for s in fsrc])
    x_n, r_n = xr[:, 0], xr[:, 1]
    if math.isnan(x_c):
        chem = np.ones(len(w))
    else:
        chem = np.where(np.isnan(x_n), 1.0, 1.0 + X_DIFF_WEIGHT * np.sqrt(np.abs(x_c - x_n) / 3.3))
    w = w * chem
    if not np.isfinite(w).all() or not np.isfinite(r_c) or not np.isfinite(r_n).all():
        raise NeedsReference("non-finite weight or radius")
    w = w / w.max()
    w_pre = w
    diameter = r_c + r_n
    low, high = diameter + DIST_CUTOFFS[0], diameter + DIST_CUTOFFS[1]
    dw = np.where(fdist <= low, 1.0,
                  np.where(fdist < high, (np.cos((fdist - low) / (high - low) * math.pi) + 1) * 0.5, 0.0))
    w = w * dw
    scaled = w * 1000.0
    if (np.abs(scaled - np.floor(scaled) - 0.5) < ROUND_BAND).any():
        raise NeedsExactFaces("weight on a rounding tie")
    # CrystalNN's neighbour order: sorted by the unrounded weight (descending), ties in the order of the
    # sort by the weight before the distance factor, ties there in Qhull's ridge order. Two neighbours
    # whose final weights are within ORDER_BAND may come in either order (the reference's last bits
    # may differ from ours), so they are marked uncertain; only the bcc parameter cares.
    first = np.argsort(-w_pre, kind="stable")
    order = first[np.argsort(-w[first], kind="stable")]
    wr = np.round(w[order], 3)
    keep = wr > 0
    ws = w[order][keep]
    uncertain = np.abs(ws[:, None] - ws[None, :]) < ORDER_BAND
    np.fill_diagonal(uncertain, False)
    return fd[order][keep], wr[keep], uncertain


def _cn_sets(weights: np.ndarray) -> list[tuple[int, float]]:
    """[(cn, cn weight), ...] of the nested sets (weights sorted descending, all > 0): one set per
    distinct weight, holding every neighbour with at least that weight."""
    w = weights.tolist()
    out = []
    for k, val in enumerate(w):
        nxt = w[k + 1] if k + 1 < len(w) else 0.0
        if nxt != val:
            out.append((k + 1, _semicircle(val, nxt)))
    return out


def _structure_arrays(structure):
    if not structure.is_ordered:
        raise NeedsReference("disordered structure")
    species = []
    for site in structure:
        sp = site.specie
        if getattr(sp, "oxi_state", None) is not None or not hasattr(sp, "X") or \
                type(sp).__name__ != "Element":
            raise NeedsReference("species with oxidation state or not an element")
        species.append(sp.symbol)
    return np.asarray(structure.lattice.matrix, float), np.asarray(structure.frac_coords, float), species


def _site_sets(structure, d, src, dist, species, i, lattice, frac, layout, stats, faces=None):
    """Ordered neighbours of site i and their CN sets: the fast path, or pymatgen's exact Voronoi
    arithmetic where the fast path cannot fix a tie (then no pair is uncertain)."""
    try:
        nd, nw, uncertain = site_neighbours(d, src, dist, species, i, lattice, frac, faces=faces)
        sets = _cn_sets(nw)
        if uncertain.any():
            unit = nd / np.linalg.norm(nd, axis=1)[:, None]
            for cn, cw in sets:
                if cn > 24 or cw == 0 or not uncertain[:cn, :cn].any():
                    continue
                for _, typ, params in layout[cn][1]:
                    if typ == "bcc" and bcc_order_unknown(params, unit[None, :cn],
                                                          uncertain[None, :cn, :cn])[0]:
                        raise NeedsExactFaces("bcc neighbour order tied")
        return nd, nw, uncertain, sets
    except NeedsExactFaces as err:
        stats.add_reason(f"exact Voronoi: {err}")
        stats.replayed_sites += 1
        nd, nw = exact_site_neighbours(structure, i, species)
        return nd, nw, np.zeros((len(nw), len(nw)), dtype=bool), _cn_sets(nw)


def _batched_faces(structures, stats: FastStats, max_points: int = 100_000):
    """Yields (index, structure, (lattice, frac, species, neighbour sets) or the reason it needs the
    reference, per-site faces) in order, the faces of the sites of consecutive structures computed
    together in :func:`_own_faces_many` (up to ``max_points`` neighbour points per call)."""
    group: list = []
    sites: list = []

    def flush():
        try:
            faces = _own_faces_many(sites, SEARCH_CUTOFF)
        except Exception:  # noqa: BLE001 - a set the batch cannot take: each site alone, with its own error
            faces = [None] * len(sites)
        k = 0
        for si, s, prepared in group:
            n = 0 if isinstance(prepared, str) else len(prepared[3])
            yield si, s, prepared, faces[k:k + n]
            k += n
        group.clear()
        sites.clear()

    points = 0
    for si, s in enumerate(structures):
        try:
            lat, frac, species = _structure_arrays(s)
            neigh = _images(lat, frac, SEARCH_CUTOFF)
            prepared = (lat, frac, species, neigh)
        except NeedsReference as err:
            prepared = str(err)
            stats.add_reason(str(err), len(s))
        except Exception as err:  # noqa: BLE001
            prepared = f"error: {type(err).__name__}"
            stats.add_reason("error", len(s))
        group.append((si, s, prepared))
        if not isinstance(prepared, str):
            sites.extend(neigh)
            points += sum(len(n[0]) for n in neigh)
        if points >= max_points:
            yield from flush()
            points = 0
    yield from flush()


def fast_site_features(structures, stats: FastStats | None = None) -> list:
    """Per structure: a (n_sites, 61) array of site features, with NaN rows for the sites that need the
    reference, or the string reason when the whole structure does. Order parameters are evaluated
    batched over all sites of all ``structures``."""
    stats = stats if stats is not None else FastStats()
    layout = _layout_index()
    results: list = []
    tasks: dict[int, list] = {}    # cn -> [(struct index, site, cn weight, unit vectors, uncertain)]
    for si, s, prepared, faces in _batched_faces(structures, stats):
        if isinstance(prepared, str):
            results.append(prepared)
            continue
        lat, frac, species, neigh = prepared
        feats = np.zeros((len(s), STRUCT_DIM))
        for i, (d, src, dist) in enumerate(neigh):
            try:
                nd, nw, uncertain, sets = _site_sets(s, d, src, dist, species, i, lat, frac, layout, stats,
                                                     faces[i])
            except NeedsReference as err:
                feats[i] = np.nan
                stats.add_reason(str(err))
                continue
            except Exception as err:  # noqa: BLE001
                feats[i] = np.nan
                stats.add_reason(f"error: {type(err).__name__}")
                continue
            unit = nd / np.linalg.norm(nd, axis=1)[:, None]
            for cn, cw in sets:
                if cn > 24:
                    continue
                wt_off, ops = layout[cn]
                feats[i, wt_off] = cw
                if ops and cw != 0:
                    tasks.setdefault(cn, []).append((si, i, cw, unit[:cn], uncertain[:cn, :cn]))
        results.append(feats)
    for cn, items in tasks.items():
        u = np.stack([it[3] for it in items])
        unc = np.stack([it[4] for it in items])
        geom = Geometry(u)
        _, ops = layout[cn]
        for off, typ, params in ops:
            vals, fragile = order_parameter(typ, params, geom, unc)
            for (si, i, cw, _, _), v, fr in zip(items, vals, fragile):
                feats = results[si]
                if fr:
                    if not np.isnan(feats[i, 0]):
                        stats.add_reason("order parameter on a threshold")
                    feats[i] = np.nan
                elif not np.isnan(feats[i, 0]):
                    feats[i, off] = cw * v
    for r in results:
        if isinstance(r, np.ndarray):
            bad = np.isnan(r).any(axis=1)
            stats.sites += len(r)
            stats.fallback_sites += int(bad.sum())
            r[bad] = np.nan
        else:
            stats.fallback_structures += 1
    return results


@lru_cache(maxsize=1)
def _reference():
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


def reference_site(structure, i: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(_reference().featurize(structure, i), dtype=float)


def fast_structure_fingerprints(structures, stats: FastStats | None = None) -> list:
    """Per structure: the (61,) site-averaged fingerprint, or an exception instance when the reference
    raises on one of its sites (the crystal fails, as with matminer)."""
    stats = stats if stats is not None else FastStats()
    out = []
    for s, r in zip(structures, fast_site_features(structures, stats)):
        try:
            if isinstance(r, str):
                stats.sites += len(s)
                stats.fallback_sites += len(s)
                r = np.array([reference_site(s, i) for i in range(len(s))])
            else:
                for i in np.flatnonzero(np.isnan(r).any(axis=1)):
                    r[i] = reference_site(s, int(i))
            out.append(r.mean(axis=0))
        except Exception as err:  # noqa: BLE001 - the reference's failure is the crystal's failure
            out.append(err)
    return out
