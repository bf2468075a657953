"""Compositional validity (CDVAE smact_validity over the pinned SMACT 2.2.1 table)."""
from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.metrics.composition import (compositional_validity, installed_smact_valid,
                                           pauling_pass, reduced_composition, smact_table, smact_valid)
from tests.metrics._data import perov_structures


@pytest.mark.parametrize("symbols,counts,expected", [
    (("Na", "Cl"), (1, 1), True),       # Na+ Cl-
    (("Na", "Cl"), (1, 2), False),      # no neutral combination passes the Pauling test
    (("Al", "Fe"), (1, 3), True),       # Fe3Al: all metals -> alloy
    (("Cs", "I", "Pb"), (1, 3, 1), True),
    (("Fe",), (1,), True),              # one element
    (("He", "O"), (1, 1), False),       # He has no oxidation state
])
def test_known_formulas(symbols, counts, expected):
    assert smact_valid(symbols, counts) is expected


def test_pinned_table_is_smact_2_2_1():
    table = smact_table()
    assert table["ox"]["Na"] == [-1, 1]          # SMACT 4.x default (ICSD-24) has [1]
    assert table["ox"]["Ir"] == [-2, -1, 1, 2, 3, 4, 5, 6, 7, 8]  # fixed to -3 after 2.2.1
    assert table["ox"]["He"] == [] and table["eneg"]["He"] is None
    assert "Fe" in table["metals"] and "Pm" not in table["metals"] and "O" not in table["metals"]


def test_pauling_test_reproduces_missing_electronegativity_behaviour():
    assert pauling_pass([1, -1], [0.93, 3.16]) is True
    assert pauling_pass([1, -1], [3.16, 0.93]) is False
    assert pauling_pass([1, -1], [None, 3.16]) is True   # cation/anion pair: TypeError -> pass
    assert pauling_pass([1, 1], [None, 3.16]) is False   # same-sign pair with None -> fail


def test_counts_are_reduced_by_the_gcd_and_sorted_by_atomic_number():
    s = Structure(Lattice.cubic(5.0), ["Cl", "Na", "Cl", "Na"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0.5]])
    assert reduced_composition(s) == (("Na", "Cl"), (1, 1))
    res = compositional_validity([s, None])
    assert res.value == 0.5 and list(res.per_item["formula"]) == ["NaCl", ""]


def test_agrees_with_installed_smact_on_its_original_table_except_iridium():
    formulas = {reduced_composition(s) for s in perov_structures(60)}
    formulas |= {(("Na", "Cl"), (1, 1)), (("Na", "Cl"), (1, 2)), (("Cs", "I", "Pb"), (1, 3, 1))}
    checked = 0
    for symbols, counts in formulas:
        if "Ir" in symbols:
            continue
        assert smact_valid(symbols, counts) == installed_smact_valid(symbols, counts, "smact14"), symbols
        checked += 1
    assert checked >= 50
