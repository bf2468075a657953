"""Property statistics: seeded subsample and W1 distances."""
from __future__ import annotations

import numpy as np
import pytest

from genlowdim.metrics.properties import property_statistics, seeded_subsample
from tests.metrics._data import perov_structures


def test_subsample_is_seeded_and_only_draws_valid_items():
    valid = np.arange(100) % 3 != 0
    a, b = seeded_subsample(valid, 10, seed=0), seeded_subsample(valid, 10, seed=0)
    assert np.array_equal(a, b) and len(np.unique(a)) == 10 and valid[a].all()
    assert not np.array_equal(a, seeded_subsample(valid, 10, seed=1))
    assert np.array_equal(seeded_subsample(valid, 1000, seed=0), np.flatnonzero(valid))


def test_distances_against_itself_are_zero_and_property_fn_is_used():
    ss = list(perov_structures(20))
    valid = np.ones(20, bool)
    res = property_statistics(ss, valid, ss, num_samples=1000)
    assert res["wdist_density"].value == 0.0 and res["wdist_num_elems"].value == 0.0
    assert res["wdist_prop"].value is None

    def volume(structures):
        return [s.volume for s in structures]

    shifted = [v + 2.0 for v in volume(ss)]
    res = property_statistics(ss, valid, ss, property_fn=volume, reference_properties=shifted)
    assert res["wdist_prop"].value == pytest.approx(2.0)
    assert res["wdist_prop"].params["reference_property_source"] == "given"
    res = property_statistics(ss, valid, ss, num_samples=5, seed=3)
    assert res["wdist_density"].params["num_samples_used"] == 5 and res["wdist_density"].params["seed"] == 3


def test_densities_equal_pymatgen_bit_for_bit():
    """``densities`` reuses the unit factors but must give exactly ``Structure.density``."""
    import numpy as np

    from genlowdim.metrics.structure import densities
    from tests.metrics._data import carbon_structures, perov_structures

    ss = list(perov_structures(200)) + list(carbon_structures("val", 200))
    assert np.array_equal(densities(ss), np.array([s.density for s in ss]))
