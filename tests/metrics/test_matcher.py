"""MatchTolerances: one frozen settings object for every matcher, checked on construction, recorded as given."""
from __future__ import annotations

import numpy as np
import pytest

from genlowdim.config import ConfigError
from genlowdim.metrics.matcher import MatchTolerances, resolve_tolerances
from genlowdim.metrics.matching import reconstruction, uniqueness
from tests.metrics._data import perov_structures


def test_defaults_are_cdvae_and_the_record_says_so():
    tol = MatchTolerances()
    assert (tol.stol, tol.angle_tol, tol.ltol, tol.scale) == (0.5, 10.0, 0.3, True)
    assert tol.to_dict() == {"stol": 0.5, "angle_tol_degrees": 10.0, "ltol": 0.3, "scale": True,
                             "matcher": "pymatgen StructureMatcher (other arguments at their defaults)"}
    m = tol.matcher()
    assert (m.stol, m.angle_tol, m.ltol, m._scale) == (0.5, 10.0, 0.3, True)
    assert tol.unscaled().matcher()._scale is False and tol.unscaled().stol == 0.5
    with pytest.raises(AttributeError):
        tol.stol = 0.1   # frozen


@pytest.mark.parametrize("kw, named", [({"stol": 0}, "stol"), ({"ltol": -0.1}, "ltol"),
                                       ({"angle_tol": 180}, "angle_tol"), ({"stol": float("nan")}, "stol"),
                                       ({"scale": "yes"}, "scale")])
def test_out_of_range_values_are_refused_by_name(kw, named):
    with pytest.raises(ConfigError, match=f"MatchTolerances.{named}:"):
        MatchTolerances(**kw)


def test_floats_and_the_object_give_the_same_numbers():
    truths = list(perov_structures(6))
    preds = truths[1:] + truths[:1]
    by_floats = reconstruction(preds, truths, None, 0.5, 10.0, 0.3)
    by_object = reconstruction(preds, truths, tolerances=MatchTolerances())
    np.testing.assert_array_equal(by_floats["match_rate"].per_item["rms"], by_object["match_rate"].per_item["rms"])
    assert by_floats["match_rate"].params == by_object["match_rate"].params
    assert resolve_tolerances(None, stol=0.4) == MatchTolerances(stol=0.4)
    with pytest.raises(ValueError, match="not both"):
        reconstruction(preds, truths, stol=0.4, tolerances=MatchTolerances())


def test_the_pruned_duplicate_search_refuses_unscaled_matching():
    ss = list(perov_structures(4))
    with pytest.raises(ValueError, match="scale=True"):
        uniqueness(ss, tolerances=MatchTolerances(scale=False))
    res = uniqueness(ss, tolerances=MatchTolerances(scale=False), method="pairwise")
    assert res.value == 1.0 and res.params["scale"] is False
