"""Reconstruction match rate / RMS, uniqueness and novelty with StructureMatcher."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from genlowdim.metrics.matching import novelty, reconstruction, uniqueness
from tests.metrics._data import perov_structures


def _perturbed(structures, sigma_angstrom: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in structures:
        noise = torch.randn(len(s), 3, generator=gen, dtype=torch.float64).numpy() * sigma_angstrom
        out.append(Structure(s.lattice, s.species, s.cart_coords + noise, coords_are_cartesian=True))
    return out


def test_a_set_against_itself_matches_perfectly():
    truths = list(perov_structures(10))
    res = reconstruction(truths, truths)
    assert res["match_rate"].value == 1.0 and res["rms_dist"].value == pytest.approx(0.0, abs=1e-8)
    assert res["match_rate"].params["stol"] == 0.5 and res["match_rate"].params["ltol"] == 0.3
    assert res["match_rate"].params["angle_tol_degrees"] == 10.0


def test_match_rate_falls_monotonically_with_noise_and_ignores_atom_order():
    truths = list(perov_structures(10))
    rates, rms = [], []
    for sigma in (0.0, 0.1, 0.4, 0.8, 1.6):
        res = reconstruction(_perturbed(truths, sigma, seed=0), truths)
        rates.append(res["match_rate"].value)
        rms.append(res["rms_dist"].value)
    assert rates[0] == 1.0 and rates[-1] < 0.5
    assert all(a >= b for a, b in zip(rates, rates[1:])), rates
    assert rms[1] > rms[0]
    shuffled = [Structure.from_sites([s[i] for i in np.random.default_rng(7).permutation(len(s))])
                for s in _perturbed(truths, 0.4, seed=0)]
    assert reconstruction(shuffled, truths)["match_rate"].value == rates[2]


def test_invalid_and_missing_predictions_count_as_failures():
    truths = list(perov_structures(4))
    preds = [truths[0], None, truths[2], truths[3]]
    res = reconstruction(preds, truths, valid_mask=np.array([True, True, False, True]))
    assert res["match_rate"].value == 0.5
    assert list(res["match_rate"].per_item["matched"]) == [True, False, False, True]
    with pytest.raises(ValueError, match="pair them"):
        reconstruction(truths[:3], truths)


def test_uniqueness_and_novelty_of_known_duplicates():
    ss = list(perov_structures(6))
    samples = ss[:4] + [ss[0].copy(), ss[1].copy()]
    res = uniqueness(samples)
    assert res.value == pytest.approx(4 / 6)
    assert list(res.per_item["duplicate_of"]) == [-1, -1, -1, -1, 0, 1]
    nov = novelty(ss[:4], train_structures=ss[2:6])
    assert nov.value == pytest.approx(0.5) and list(nov.per_item["novel"]) == [True, True, False, False]
