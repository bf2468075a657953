"""Voronoi faces of a site among the periodic images around it, for the fast CrystalNN fingerprint
(:mod:`genlowdim.metrics.crystalnn`): the images within a cutoff, and the cells of many sites at once as the
convex hulls of the polar duals 2d/|d|² of their neighbour displacements (hull facets are the cell's
vertices, hull vertices its faces), each with its faces' solid angles and fan volumes.

A site whose cell could hang on a floating-point tie raises (or is given) a :class:`NeedsReference` naming
the guard: :class:`NeedsExactFaces` (recomputed through pymatgen's exact Voronoi arithmetic),
:class:`Unbounded` (pymatgen retries at a larger cutoff), :class:`FlatFace`.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import ConvexHull

__all__ = ["SEARCH_CUTOFF", "SPHERE_BAND", "CORNERS", "NeedsReference", "NeedsExactFaces", "Unbounded",
           "FlatFace", "images_within", "retry_cutoff", "row_cross", "voronoi_cells", "own_faces_many"]

SEARCH_CUTOFF = 7.0
SPHERE_BAND = 1e-6      # a point this close to the search sphere may or may not be in pymatgen's set
CORNERS = ([1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1])
FAN_REL_TOL = 1e-10


class NeedsReference(Exception):
    """The fast path cannot vouch for this site; the reason names the guard."""


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


def images_within(lattice: np.ndarray, frac: np.ndarray, cutoff: float, centres=None):
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


def row_cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def voronoi_cells(point_sets: list[np.ndarray]) -> list:
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
    e1 = row_cross(nrm, helper)
    e1 /= np.linalg.norm(e1, axis=1)[:, None]
    e2 = row_cross(nrm, e1)
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
    turn = np.abs(np.einsum("kd,kd->k", v_s[prev], row_cross(v_s, v_s[nxt])))
    flat_rows = big & (turn <= FAN_REL_TOL * norm[prev] * norm * norm[nxt])
    flat = np.zeros(len(hulls), dtype=bool)
    flat[cell_of_pt[p_s[flat_rows]]] = True
    tp = np.abs(np.einsum("kd,kd->k", a0, row_cross(aj, ak)))
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


def own_faces_many(sites: list, cutoff: float) -> list:
    """Per site (d, src, dist): its Voronoi faces (displacements, sources, distances, solid angles, areas)
    or the ``NeedsReference`` instance that stops it.

    Each cell is first taken from the points within min(cutoff, max(3·d_nn, 4)) Å; it is exact when twice
    its largest vertex distance is below that radius (a farther point cannot cut it), otherwise it is
    recomputed from the whole ``cutoff`` set. Each round computes the cells of all its sites in one
    :func:`voronoi_cells` call."""
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
        for (i, sel), cell in zip(todo, voronoi_cells(point_sets)):
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
