"""Coverage metrics (CDVAE compute_cov) on feature arrays with answers known by construction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genlowdim.metrics.coverage import coverage, coverage_single, nearest_distances


def _points(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()


def test_a_set_against_itself_is_fully_covered():
    s, c = _points(50, 61, 0), _points(50, 132, 1)
    res = coverage(s, c, s, c, struct_cutoff=0.2, comp_cutoff=4.0)
    assert res["cov_recall"].value == 1.0 and res["cov_precision"].value == 1.0
    for name in ("amsd_recall", "amsd_precision", "amcd_recall", "amcd_precision"):
        assert res[name].value == pytest.approx(0.0, abs=1e-12)


def test_hand_computed_example_with_separate_minima_and_unfiltered_denominator():
    # generated structure/composition features on a line; reference at 0 and 10
    gen_s = np.array([[0.1], [0.5], [9.95]])
    gen_c = np.array([[0.0], [0.0], [3.0]])
    ref_s = np.array([[0.0], [10.0]])
    ref_c = np.array([[0.0], [0.0]])
    res = coverage(gen_s, gen_c, ref_s, ref_c, struct_cutoff=0.2, comp_cutoff=2.0, num_generated=4)
    # precision: gen0 hits ref0 (0.1, 0); gen1 too far (0.5); gen2: struct 0.05 but comp 3 > 2
    assert res["cov_precision"].value == pytest.approx(1 / 4)  # 4 generated, one had no fingerprint
    # recall: ref0 nearest struct 0.1, comp 0 -> covered; ref1 struct 0.05, comp min over all gen = 0
    assert res["cov_recall"].value == 1.0
    assert res["amsd_recall"].value == pytest.approx((0.1 + 0.05) / 2)
    assert res["amsd_precision"].value == pytest.approx((0.1 + 0.5 + 0.05) / 3)
    assert res["amcd_precision"].value == pytest.approx((0 + 0 + 3) / 3)
    assert res["cov_precision"].params["num_generated"] == 4


def test_chunking_does_not_change_distances():
    a, b = _points(37, 5, 2), _points(23, 5, 3)
    full = nearest_distances(a, b, chunk=10_000)
    small = nearest_distances(a, b, chunk=4)
    brute = np.linalg.norm(a[:, None] - b[None], axis=-1)
    for got in (full, small):
        np.testing.assert_allclose(got[0], brute.min(1), atol=1e-12)
        np.testing.assert_allclose(got[1], brute.min(0), atol=1e-12)


def test_single_feature_variant_for_plain_vectors():
    x = np.array([[0.0, 0.0], [3.0, 0.0]])
    y = np.array([[0.0, 0.5], [0.0, -0.5], [10.0, 0.0]])
    res = coverage_single(x, y, cutoff=1.0)
    assert res["cov_recall"].value == pytest.approx(2 / 3)
    assert res["cov_precision"].value == pytest.approx(1 / 2)
    assert res["amd_precision"].value == pytest.approx((0.5 + np.hypot(3, 0.5)) / 2)


def test_bad_feature_arrays_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="NaN"):
        nearest_distances(np.array([[np.nan]]), np.array([[0.0]]))
    with pytest.raises(ValueError, match="feature sizes differ"):
        nearest_distances(np.zeros((2, 3)), np.zeros((2, 4)))
