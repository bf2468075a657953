"""``StructureMatcher.fit(r1, r2, skip_structure_reduction=True)`` for the pairs the duplicate search asks
about, with the same boolean and less repeated work.

pymatgen's matcher, once both crystals are reduced, scales them to one volume (optionally), lists every
basis of r1's lattice that fits r2's reduced cell (``Lattice.find_all_mappings``), and for each such basis
tries every translation that puts one site of r1 on one chosen site of r2: a fractional-coordinate
prefilter, then the shortest periodic vectors, a linear assignment and the largest site displacement
after removing the mean shift. ``fit`` is True as soon as one (basis, translation) gives a largest
displacement below ``stol``.

:func:`fit` takes the same steps on the same numbers, so each comparison it makes sees the same floating
point values; it only avoids recomputing what does not change inside the loops:

* per pair: the scaled lattices, the Cartesian coordinates of r1, r2's fractional coordinates and cell
  parameters, the species mask and its assignment check;
* per basis: the averaged lattice, its normalisation and fractional tolerance, its LLL-reduced basis,
  the reciprocal lengths of that basis and the LLL coordinates of r1's sites (pymatgen recomputes the
  last three, and two matrix inverses, for every translation that passes the prefilter);
* the prefilter is evaluated for all translations of a basis at once (elementwise, the same
  subtractions and roundings as pymatgen's loop), and the shortest vectors of all translations that pass
  it come from one call of pymatgen's own ``pbc_shortest_vectors`` kernel (each entry depends only on its
  own two sites, so stacking the translations changes no value). The linear assignment and the final
  displacement are then computed translation by translation, in pymatgen's order, with the same numpy
  calls on arrays of the same shapes, stopping at the first that fits.

Anything else (supercells, subsets, another comparator, ignored species, unequal site counts, lattices not
periodic in three directions) goes to pymatgen's ``fit`` unchanged. ``tests/metrics/test_fastfit.py``
compares the two on every ordered pair of carbon_24 and perov_5 sets, scaled and unscaled.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Crystal", "crystal", "fit", "handles"]

_CHUNK = 1 << 20  # most prefilter differences (translations x sites x sites x 3) held at once


class Crystal:
    """What :func:`fit` reads from one reduced crystal, computed once: the structure, its fractional
    coordinates, its runs of equal species, its composition hash and (unscaled) Cartesian coordinates."""
    __slots__ = ("structure", "frac", "runs", "hash", "_cart")

    def __init__(self, structure, comparator):
        self.structure = structure
        self.frac = np.array(structure.frac_coords)
        self.runs = _runs(structure.species_and_occu)
        self.hash = comparator.get_hash(structure.composition)
        self._cart = None

    def cart(self, matrix: np.ndarray | None) -> np.ndarray:
        """Cartesian coordinates of the sites in ``matrix`` (None: the crystal's own lattice), site by site
        as pymatgen's sites compute theirs (``np.dot(frac, matrix)`` per site)."""
        if matrix is None:
            if self._cart is None:
                self._cart = _cart(self.frac, self.structure.lattice.matrix)
            return self._cart
        return _cart(self.frac, matrix)


def _cart(frac: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return np.array([np.dot(f, matrix) for f in frac])


def crystal(structure, matcher) -> Crystal:
    """The :class:`Crystal` of a reduced structure (for repeated :func:`fit` calls)."""
    return structure if isinstance(structure, Crystal) else Crystal(structure, matcher._comparator)


def handles(matcher, r1, r2) -> bool:
    """Whether :func:`fit` computes this pair itself (else it calls pymatgen's ``fit``)."""
    from pymatgen.core.structure_matcher import SpeciesComparator

    r1, r2 = (r.structure if isinstance(r, Crystal) else r for r in (r1, r2))
    return (type(matcher._comparator) is SpeciesComparator and not matcher._subset and not matcher._supercell
            and not matcher._ignored_species and len(r1) == len(r2) and len(r1) > 0
            and all(r1.lattice.pbc) and all(r2.lattice.pbc))


def fit(matcher, r1, r2) -> bool:
    """``matcher.fit(r1, r2, skip_structure_reduction=True)``: r1, r2 reduced as ``fit`` would reduce them
    (Niggli, primitive cell), as pymatgen structures or :class:`Crystal` (made with this matcher)."""
    if not handles(matcher, r1, r2):
        r1, r2 = (r.structure if isinstance(r, Crystal) else r for r in (r1, r2))
        return bool(matcher.fit(r1, r2, skip_structure_reduction=True))
    c1, c2 = crystal(r1, matcher), crystal(r2, matcher)
    if not c1.hash == c2.hash:   # the composition check, with the comparator's own equality
        return False
    mask, t1, t2 = _species_mask(c1.runs, c2.runs, len(c1.frac), len(c2.frac))
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(mask.astype(float))
    if mask[rows, cols].sum() > 0:   # no species-preserving one-to-one map of the sites
        return False
    return _search(matcher, c1, c2, mask, t1, t2)


def _runs(species) -> list:
    """(species, start, stop) of each run of consecutive equal species."""
    out, start = [], 0
    for k in range(1, len(species) + 1):
        if k == len(species) or not species[k] == species[start]:
            out.append((species[start], start, k))
            start = k
    return out


def _species_mask(runs1: list, runs2: list, n1: int, n2: int):
    """(mask, translation sites of r1, anchor site of r2) as the matcher's ``_get_mask`` with fu = 1:
    mask[i, j] = 1 where site i of r2 may not sit on site j of r1; runs compared by their first member."""
    mask = np.zeros((n2, n1), dtype=np.int64)
    for a, i0, i1 in runs1:
        for b, j0, j1 in runs2:
            mask[j0:j1, i0:i1] = not a == b
    anchor = int(np.argmax(mask.sum(axis=-1)))   # the r2 site with the fewest possible partners
    return mask, np.flatnonzero(mask[anchor] == 0), anchor


def _lattice_matrix(matrix) -> np.ndarray:
    """The matrix ``Lattice(matrix)`` would hold."""
    return np.array(matrix, dtype=np.float64).reshape((3, 3))


def _reciprocal_lengths(matrix: np.ndarray) -> np.ndarray:
    """``np.array(Lattice(matrix).reciprocal_lattice.abc)``, without building the two lattices."""
    recip = _lattice_matrix(np.linalg.inv(matrix).T * 2 * np.pi)
    return np.sqrt(np.sum(recip ** 2, axis=1))


class _LLLView:
    """What pymatgen's ``pbc_shortest_vectors`` kernel reads from a lattice (``pbc``, ``lll_matrix``,
    ``get_lll_frac_coords``), with the LLL coordinates already computed: ``known`` is a list of (array
    the kernel will be given, its LLL coordinates)."""
    pbc = (True, True, True)

    def __init__(self, lll_matrix, known: list):
        self.lll_matrix = lll_matrix
        self._known = known

    def get_lll_frac_coords(self, frac_coords):
        for given, lll in self._known:   # the same object, or (should the kernel copy it) the same values
            if frac_coords is given:
                return lll
        for given, lll in self._known:
            if np.array_equal(frac_coords, given):
                return lll
        raise ValueError("coordinates the LLL view was not prepared for")


def _search(matcher, c1: Crystal, c2: Crystal, mask: np.ndarray, t1, t2) -> bool:
    """Every lattice mapping and translation, as ``_strict_match`` with ``break_on_match``."""
    from pymatgen.core import Lattice

    lat1, lat2 = c1.structure.lattice, c2.structure.lattice
    if matcher._scale:   # ``_preprocess``: both cells rescaled to one volume
        ratio = (lat2.volume / lat1.volume) ** (1 / 6)
        lat1, lat2 = Lattice(lat1.matrix * ratio), Lattice(lat2.matrix / ratio)
        cart1 = c1.cart(lat1.matrix)
    else:
        cart1 = c1.cart(None)
    s2fc, params2, n = c2.frac, np.array(lat2.parameters), len(c1.frac)
    allowed = mask == 0
    averaged: dict = {}
    for latt, _, scale_m in lat1.find_all_mappings(lat2, ltol=matcher.ltol, atol=matcher.angle_tol,
                                                   skip_rotation_matrix=True):
        if abs(_int_det(scale_m)) != 1:   # ``_get_lattices``: |det| within 0.5 of 1, i.e. not a supercell
            continue
        s1fc = latt.get_fractional_coords(cart1)
        s1fc -= np.floor(s1fc)
        params = (_parameters(latt.matrix) + params2) / 2
        key = params.tobytes()   # mappings related by inversion have the same cell parameters, bit for bit
        if key not in averaged:
            averaged[key] = _Averaged(Lattice.from_parameters(*params), n, matcher.stol)
        avg = averaged[key]
        shifted = s2fc[None, :, :] + (s1fc[t1] - s2fc[t2])[:, None, :]   # one r2 copy per translation
        passing = shifted[_prefilter(shifted, s1fc, avg.frac_tol, allowed)]
        if len(passing) and (_largest_displacements(avg, s1fc, passing, mask) < matcher.stol).any():
            return True
    return False


def _parameters(matrix: np.ndarray) -> np.ndarray:
    """``np.array(Lattice(matrix).parameters)`` by the same operations (lengths, clipped cosines from
    ``np.dot`` of the rows, ``arccos`` in degrees), without the lattice's cached-property machinery."""
    lengths = np.sqrt(np.sum(matrix ** 2, axis=1))
    ln = lengths.tolist()
    cos = [min(max(np.dot(matrix[(d + 1) % 3], matrix[(d + 2) % 3]) / (ln[(d + 1) % 3] * ln[(d + 2) % 3]), -1.0), 1.0)
           for d in range(3)]
    return np.concatenate([lengths, np.rad2deg(np.arccos(np.array(cos)))])


def _int_det(m: np.ndarray) -> int:
    """Exact determinant of an integer 3x3 matrix (numpy's float determinant of these small integer
    matrices is within far less than 0.5 of it, so |det| = 1 is pymatgen's test)."""
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def _volume(matrix: np.ndarray) -> float:
    """``Lattice.volume``: |(a x b) . c|, the cross product with numpy's own products and differences."""
    (a0, a1, a2), (b0, b1, b2) = matrix[0].tolist(), matrix[1].tolist()
    cross = np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])
    return float(abs(np.dot(cross, matrix[2])))


class _Averaged:
    """The averaged lattice of one mapping and what follows from it alone: the normalisation, the
    fractional tolerance and (when a translation gets that far) the LLL basis, its tolerance and inverse."""

    def __init__(self, avg, n: int, stol: float):
        self.avg, self.stol = avg, stol
        self.norm = (n / _volume(avg.matrix)) ** (1 / 3)
        self.frac_tol = _reciprocal_lengths(avg.matrix) * stol / (np.pi * self.norm)
        self._lll = None

    def lll(self) -> tuple:
        """(LLL matrix, LLL fractional tolerance, inverse of the LLL mapping)."""
        if self._lll is None:
            lll_matrix = self.avg.lll_matrix   # LLL-reduces the averaged lattice (cached in it)
            tol = _reciprocal_lengths(_lattice_matrix(lll_matrix)) * self.stol / (np.pi * self.norm)
            self._lll = (lll_matrix, tol, np.linalg.inv(self.avg.lll_mapping))
        return self._lll


def _prefilter(shifted: np.ndarray, s1fc: np.ndarray, frac_tol: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """For each translated copy of r2 (shifted[k]), whether every site of it lies within ``frac_tol``
    (per fractional axis, modulo 1) of an allowed site of r1: pymatgen's ``is_coord_subset_pbc`` test,
    |d - round(d)| <= tol on every axis (rounding half-way cases either way gives the same |0.5|)."""
    n1 = len(s1fc)
    step = max(1, _CHUNK // max(1, shifted.shape[1] * n1))
    out = np.empty(len(shifted), dtype=bool)
    for k in range(0, len(shifted), step):
        near = allowed[None, :, :]
        for axis in range(3):
            d = shifted[k:k + step, :, None, axis] - s1fc[None, None, :, axis]
            d -= np.rint(d)
            near = near & (np.abs(d) <= frac_tol[axis])
        out[k:k + step] = near.any(axis=2).all(axis=1)
    return out


def _largest_displacements(avg: _Averaged, s1fc: np.ndarray, passing: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each translated copy of r2, the largest site displacement (in units of the normalisation length)
    after the optimal assignment and the removal of the mean shift: ``max(dist)`` of ``_cart_dists``."""
    from pymatgen.util.coord_cython import pbc_shortest_vectors
    from scipy.optimize import linear_sum_assignment

    lll_matrix, lll_tol, inverse = avg.lll()
    k, n = passing.shape[:2]
    stacked = passing.reshape(-1, 3)
    # LLL coordinates copy by copy, with the same call (same shapes) as pymatgen makes for each
    lll2 = np.concatenate([np.dot(passing[c], inverse) for c in range(k)])
    view = _LLLView(lll_matrix, [(stacked, lll2), (s1fc, np.dot(s1fc, inverse))])
    vecs, d2 = pbc_shortest_vectors(view, stacked, s1fc, np.tile(mask, (k, 1)), True, lll_tol)
    d2 = d2.reshape(k, n, n)
    sol = np.array([linear_sum_assignment(d2[c])[1] for c in range(k)])
    short = vecs.reshape(k, n, n, 3)[np.arange(k)[:, None], np.arange(n)[None, :], sol]
    # per copy: mean shift over the sites (a sum in site order, then / n), squared residual lengths
    shift = np.add.reduce(short, axis=1) / n
    dist = np.add.reduce((short - shift[:, None, :]) ** 2, axis=-1) ** 0.5 * avg.norm
    return dist.max(axis=1)
