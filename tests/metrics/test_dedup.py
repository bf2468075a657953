"""The pruned, reduce-once uniqueness/novelty path (genlowdim.metrics.dedup) against every pair."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.metrics.dedup import _longest, _shapes
from genlowdim.metrics.lattice_screen import lattice_shape, may_match
from genlowdim.metrics.matching import matcher, novelty, reduce_for_matching, uniqueness
from tests.metrics._data import carbon_structures, equivalent_copy, perov_structures, perov_with_copies

TOL = (0.5, 10.0, 0.3)


def _sets() -> dict:
    """Sets with many true duplicates: carbon_24 val (repeats polymorphs) and perov_5 crystals next to
    equivalent copies under random cell choices, translations and site orders."""
    return {"carbon_24 val": list(carbon_structures("val", 120)), "perov_5 copies": perov_with_copies(40, 60, 3)}


@pytest.mark.parametrize("name", ["carbon_24 val", "perov_5 copies"])
def test_pruning_never_drops_a_pair_the_matcher_accepts(name):
    """Every ordered pair of one formula: the matcher's answer on the reduced crystals, and whether the
    key (reduced site count) and the lattice screen let it through. No accepted pair may be pruned."""
    ss = _sets()[name]
    prepared = reduce_for_matching(ss, range(len(ss)))
    shapes = _shapes(prepared, _longest(prepared), TOL[2])
    m = matcher(*TOL)
    accepted = pruned = 0
    for i, j in itertools.permutations(range(len(ss)), 2):
        (key_i, ri), (key_j, rj) = prepared[i], prepared[j]
        if key_i[0] != key_j[0]:
            continue  # other formula: the matcher's composition check, unchanged
        passes = key_i == key_j and may_match(shapes[i], shapes[j], TOL[2], TOL[1])
        fits = m.fit(ri, rj, skip_structure_reduction=True)
        assert passes or not fits, (i, j)
        accepted += fits
        pruned += not passes
    assert accepted > 100  # many true duplicates
    if name == "carbon_24 val":   # one formula: the screen is what keeps the pairs few
        assert pruned > 2 * accepted


def test_fit_on_reduced_copies_equals_fit_on_the_crystals():
    """fit(s1, s2) == fit(reduce(s1), reduce(s2), skip_structure_reduction=True), matches included."""
    ss = list(carbon_structures("val", 40)) + perov_with_copies(10, 10, 4)
    prepared = reduce_for_matching(ss, range(len(ss)))
    m = matcher(*TOL)
    pairs = [(i, j) for i, j in itertools.permutations(range(len(ss)), 2)
             if prepared[i][0] == prepared[j][0]][:400]
    raw = [m.fit(ss[i], ss[j]) for i, j in pairs]
    reduced = [m.fit(prepared[i][1], prepared[j][1], skip_structure_reduction=True) for i, j in pairs]
    assert raw == reduced and sum(raw) > 50


@pytest.mark.parametrize("workers", [1, 2])
def test_pruned_uniqueness_and_novelty_equal_the_pairwise_path(workers):
    ss = perov_with_copies(60, 50, seed=5)
    train = list(perov_structures(40)) + [equivalent_copy(s, np.random.default_rng(6)) for s in perov_structures(5, 60)]
    valid = np.ones(len(ss), bool)
    valid[::7] = False
    old, new = uniqueness(ss, valid, method="pairwise"), uniqueness(ss, valid, workers=workers)
    assert np.array_equal(old.per_item["duplicate_of"], new.per_item["duplicate_of"])
    assert old.value == new.value and (old.per_item["duplicate_of"] >= 0).sum() > 20
    old, new = novelty(ss, train, valid, method="pairwise"), novelty(ss, train, valid, workers=workers)
    assert np.array_equal(old.per_item["novel"], new.per_item["novel"]) and old.value == new.value


def test_one_and_two_processes_give_the_same_carbon_groups():
    ss = list(carbon_structures("val", 200))
    one, two = uniqueness(ss, workers=1), uniqueness(ss, workers=2)
    assert np.array_equal(one.per_item["duplicate_of"], two.per_item["duplicate_of"])
    assert one.params["num_distinct"] < 120
    train = list(carbon_structures("test", 60))
    assert np.array_equal(novelty(ss, train, workers=1).per_item["novel"],
                          novelty(ss, train, workers=2).per_item["novel"])


def test_lattice_screen_on_cells_known_by_construction():
    cubic = lattice_shape(Lattice.cubic(4.0).matrix, 6.0)
    sheared = lattice_shape(np.array([[4.0, 0, 0], [4.0, 4.0, 0], [0, 0, 4.0]]), 3.0)  # cubic, other basis
    long = lattice_shape(Lattice.tetragonal(2.0, 16.0).matrix, 3.0)
    assert may_match(cubic, sheared, 0.3, 10.0) and may_match(sheared, cubic, 0.3, 10.0)
    assert not may_match(cubic, long, 0.3, 10.0) and not may_match(long, cubic, 0.3, 10.0)
    tiny_list = lattice_shape(Lattice.cubic(4.0).matrix, 0.0)
    assert may_match(tiny_list, long, 0.3, 10.0)  # cannot decide without lattice vectors: let it through


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="pairwise"):
        uniqueness([Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])], method="fast")
