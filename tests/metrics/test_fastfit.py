"""genlowdim.metrics.fastfit.fit against pymatgen's StructureMatcher.fit on reduced crystals: the same boolean
on every ordered pair of one key, scaled and unscaled."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.metrics.dedup import prepare
from genlowdim.metrics.fastfit import crystal, fit, handles
from genlowdim.metrics.matcher import MatchTolerances
from tests.metrics._data import carbon_structures, equivalent_copy, perov_with_copies


def _perov_set() -> list:
    """40 perov_5 crystals with 60 equivalent copies, and 60 more copies whose sites are then moved by
    Gaussian noise of 0.1 to 1 Angstrom (matches, failures and pairs close to the site tolerance)."""
    rng = np.random.default_rng(7)
    out = perov_with_copies(40, 60, 3)
    for k in rng.integers(len(out), size=60):
        moved = equivalent_copy(out[int(k)], rng)
        sigma = rng.choice([0.1, 0.4, 0.7, 1.0])
        for site, step in enumerate(rng.normal(0, sigma, (len(moved), 3))):
            moved.translate_sites([site], step, frac_coords=False)
        out.append(moved)
    return out


def _sets() -> dict:
    return {"carbon_24 val": list(carbon_structures("val", 150)), "perov_5 copies": _perov_set()}


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("name", ["carbon_24 val", "perov_5 copies"])
def test_same_boolean_as_pymatgen_on_every_pair_of_a_key(name, scale):
    """Every ordered pair with the same (reduced formula, reduced site count), as the duplicate search
    asks: zero disagreements, with many matches and many non-matches among the pairs."""
    ss = _sets()[name]
    tol = MatchTolerances(scale=scale)
    m = tol.matcher()
    prepared = prepare(ss, range(len(ss)), tol, None, 1)
    crystals = {i: crystal(r, m) for i, (_, r) in prepared.items()}
    pairs = [(i, j) for i, j in itertools.permutations(range(len(ss)), 2) if prepared[i][0] == prepared[j][0]]
    ours = [fit(m, crystals[i], crystals[j]) for i, j in pairs]
    theirs = [bool(m.fit(prepared[i][1], prepared[j][1], skip_structure_reduction=True)) for i, j in pairs]
    wrong = [p for p, a, b in zip(pairs, ours, theirs) if a != b]
    assert not wrong, wrong[:10]
    assert all(handles(m, crystals[i], crystals[j]) for i, j in pairs)   # none went to pymatgen's fit
    assert sum(theirs) > 150 and len(pairs) - sum(theirs) > 100, (sum(theirs), len(pairs))


def test_structures_or_crystals_give_the_same_answer():
    ss = list(carbon_structures("val", 30))
    tol = MatchTolerances()
    m = tol.matcher()
    reduced = [r for _, r in prepare(ss, range(len(ss)), tol, None, 1).values()]
    pairs = [(i, j) for i, j in itertools.permutations(range(len(ss)), 2) if len(reduced[i]) == len(reduced[j])]
    assert [fit(m, reduced[i], reduced[j]) for i, j in pairs] == \
        [fit(m, crystal(reduced[i], m), crystal(reduced[j], m)) for i, j in pairs]


def test_cases_outside_the_fast_path_go_to_pymatgen():
    """Unequal site counts and other matcher settings are answered by pymatgen's fit itself."""
    from pymatgen.core.structure_matcher import ElementComparator, StructureMatcher

    one = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    two = Structure(Lattice.tetragonal(3.0, 6.0), ["Si", "Si"], [[0, 0, 0], [0, 0, 0.5]])
    plain = MatchTolerances().matcher()
    assert not handles(plain, one, two) and fit(plain, one, two) == plain.fit(one, two, skip_structure_reduction=True)
    for other in (StructureMatcher(attempt_supercell=True), StructureMatcher(allow_subset=True),
                  StructureMatcher(comparator=ElementComparator())):
        assert not handles(other, one, one)
        assert fit(other, one, two) == other.fit(one, two, skip_structure_reduction=True)
    assert fit(plain, one, one)


def test_batched_reductions_add_in_the_order_of_one_copy_at_a_time():
    """The mean shift and squared lengths are reduced for all translations at once; numpy must add them in
    the order it uses for one translation's (sites, 3) array (values chosen so that order shows)."""
    rng = np.random.default_rng(0)
    for n in (1, 5, 8, 9, 24, 130):
        x = rng.standard_normal((7, n, 3)) * 10.0 ** rng.integers(-8, 16, (7, n, 3))
        assert np.array_equal(np.add.reduce(x, axis=1) / n, np.array([np.mean(c, axis=0) for c in x]))
        assert np.array_equal(np.add.reduce(x ** 2, axis=-1), np.array([np.sum(c ** 2, axis=-1) for c in x]))


def test_every_largest_displacement_equals_pymatgen_s(monkeypatch):
    """On pairs that fail (where both search every mapping and translation), the largest displacement of
    every translation that passes the prefilter, in order, is pymatgen's value bit for bit (100 such pairs
    scaled, 100 unscaled)."""
    import genlowdim.metrics.fastfit as fastfit
    from pymatgen.core.structure_matcher import StructureMatcher

    ss = list(carbon_structures("val", 120)) + _perov_set()[-60:]
    ours, theirs = [], []
    real_cart, real_largest = StructureMatcher._cart_dists.__func__, fastfit._largest_displacements

    def their_cart(cls, *args, **kwargs):
        out = real_cart(cls, *args, **kwargs)
        theirs.append(max(out[0]))
        return out

    def our_largest(*args):
        out = real_largest(*args)
        ours.extend(out.tolist())
        return out

    monkeypatch.setattr(StructureMatcher, "_cart_dists", classmethod(their_cart))
    monkeypatch.setattr(fastfit, "_largest_displacements", our_largest)
    checked = {True: 0, False: 0}
    for scale in checked:
        tol = MatchTolerances(scale=scale)
        m = tol.matcher()
        prepared = prepare(ss, range(len(ss)), tol, None, 1)
        for i, j in itertools.permutations(range(len(ss)), 2):
            if prepared[i][0] != prepared[j][0] or checked[scale] >= 100:
                continue
            del ours[:], theirs[:]
            if not m.fit(prepared[i][1], prepared[j][1], skip_structure_reduction=True):
                assert not fit(m, prepared[i][1], prepared[j][1])
                assert ours == theirs, (i, j, scale)
                checked[scale] += bool(theirs)
    assert checked == {True: 100, False: 100}


def test_lattice_quantities_are_pymatgen_s_bit_for_bit():
    from genlowdim.metrics.fastfit import _int_det, _parameters, _reciprocal_lengths, _volume

    rng = np.random.default_rng(3)
    for _ in range(2000):
        lattice = Lattice(rng.standard_normal((3, 3)) * rng.uniform(1, 20))
        assert np.array_equal(_parameters(lattice.matrix), np.array(lattice.parameters))
        assert _volume(lattice.matrix) == lattice.volume
        assert np.array_equal(_reciprocal_lengths(lattice.matrix), np.array(lattice.reciprocal_lattice.abc))
        lll = lattice.get_lll_reduced_lattice()
        assert np.array_equal(_reciprocal_lengths(lattice.lll_matrix), np.array(lll.reciprocal_lattice.abc))
        m = rng.integers(-4, 5, (3, 3))
        assert abs(_int_det(m)) == round(abs(np.linalg.det(m)))
