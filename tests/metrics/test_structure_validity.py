"""Structural validity against cases known by construction."""
from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.metrics.structure import (densities, num_elements, structural_validity,
                                         validity_reason)
from tests.metrics._data import perov_structures


def test_two_atoms_0p3_angstrom_apart_is_too_close():
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 Å
    reason, dmin = validity_reason(s)
    assert reason == "too_close" and dmin == pytest.approx(0.3)


def test_distance_uses_minimum_image_across_the_boundary():
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.01, 0.5, 0.5], [0.99, 0.5, 0.5]])  # 0.1 Å apart
    assert validity_reason(s) == ("too_close", pytest.approx(0.1))
    far = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.0, 0, 0], [0.5, 0, 0]])
    assert validity_reason(far) == (None, pytest.approx(2.5))


def test_tiny_cell_and_unbuildable_entries_are_invalid_with_their_reason():
    tiny = Structure(Lattice.cubic(0.05 ** (1 / 3)), ["Na"], [[0, 0, 0]])  # 0.05 Å^3
    assert tiny.volume == pytest.approx(0.05)
    assert validity_reason(tiny)[0] == "tiny_cell"
    assert validity_reason(None)[0] == "construction_failed"


def test_reasons_are_counted_and_a_real_split_is_fully_valid():
    good = list(perov_structures(20))
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])
    tiny = Structure(Lattice.cubic(0.3), ["Na"], [[0, 0, 0]])
    res = structural_validity(good + [close, close, tiny, None])
    assert res.value == pytest.approx(20 / 24)
    assert res.params["invalid_reasons"] == {"construction_failed": 1, "tiny_cell": 1, "too_close": 2}
    assert res.params["min_distance_angstrom"] == 0.5 and res.params["min_volume_angstrom3"] == 0.1
    assert list(res.per_item["reason"][-4:]) == ["too_close", "too_close", "tiny_cell", "construction_failed"]
    assert structural_validity(good).value == 1.0


def test_density_and_element_count_of_known_cells(small_structures):
    nacl = small_structures["NaCl"]
    expected = 4 * (22.98976928 + 35.453) / 6.02214076e23 / (5.64e-8) ** 3  # g/cm^3
    assert densities([nacl])[0] == pytest.approx(expected, rel=1e-4)
    assert np.array_equal(num_elements([nacl, small_structures["SrTiO3"]]), [2, 3])
