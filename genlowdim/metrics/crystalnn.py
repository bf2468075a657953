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

from genlowdim.metrics.crystalnn_exact import DIST_CUTOFFS, X_DIFF_WEIGHT, element_data, exact_site_neighbours
from genlowdim.metrics.order_params import Geometry, bcc_order_unknown, ops_layout, order_parameter
from genlowdim.metrics.voronoi_faces import (SEARCH_CUTOFF, NeedsExactFaces, NeedsReference, Unbounded,  # noqa: F401
                                             images_within, own_faces_many, retry_cutoff)

ROUND_BAND = 1e-6
ORDER_BAND = 1e-9       # weights closer than this may be ordered either way by the reference
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


def site_neighbours(d: np.ndarray, src: np.ndarray, dist: np.ndarray, species: list[str], centre: int,
                    lattice: np.ndarray | None = None, frac: np.ndarray | None = None, faces=None):
    """CrystalNN's rounded neighbour weights of one site on the fast path.

    Returns (displacements (P, 3), rounded weights (P,), uncertain (P, P)) for the neighbours with
    positive weight, sorted by weight (descending); ``uncertain[a, b]`` marks pairs whose relative order
    the reference may break either way (tied weights, ties broken by Qhull's ridge order). Raises
    ``NeedsExactFaces`` or ``NeedsReference`` when it cannot vouch for the result. With ``lattice`` and
    ``frac`` an unbounded cell is retried at pymatgen's larger cutoff. ``faces``: this site's entry of
    :func:`own_faces_many` when it was computed in a batch."""
    if faces is None:
        faces = own_faces_many([(d, src, dist)], SEARCH_CUTOFF)[0]
    if isinstance(faces, Unbounded):
        cutoff = None if lattice is None else retry_cutoff(lattice)
        if cutoff is None:
            raise NeedsReference("unbounded cell, no retry")
        faces = own_faces_many(images_within(lattice, frac, cutoff, [centre]), cutoff)[0]
        if isinstance(faces, Unbounded):
            raise NeedsReference("unbounded cell at the retry cutoff")
    if isinstance(faces, Exception):
        raise faces
    return _weights(*faces, species, centre)


def _weights(fd, fsrc, fdist, omega, area, species, centre):
    w = omega / omega.max()
    w = w * (omega / area)
    x_c, r_c = element_data(species[centre])
    xr = np.array([element_data(species[s]) for s in fsrc])
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
    together in :func:`own_faces_many` (up to ``max_points`` neighbour points per call)."""
    group: list = []
    sites: list = []

    def flush():
        try:
            faces = own_faces_many(sites, SEARCH_CUTOFF)
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
            neigh = images_within(lat, frac, SEARCH_CUTOFF)
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
