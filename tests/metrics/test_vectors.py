"""Vector metrics against answers known by construction."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from genlowdim.metrics.vectors import (density_coverage, knn_precision_recall, mmd, nearest_neighbour_distances,
                                       pairwise_blocks, wasserstein1)


def _gauss(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def test_w1_of_a_set_with_itself_is_zero():
    x = _gauss(300, 5, 0)
    assert wasserstein1(x, x)["value"] == pytest.approx(0.0, abs=1e-12)
    # a permutation of the same points is the same empirical measure
    assert wasserstein1(x, x[torch.randperm(300)])["value"] == pytest.approx(0.0, abs=1e-12)


def test_w1_between_point_masses_is_their_distance():
    a = torch.tensor([[0.0, 0.0, 0.0]]).repeat(7, 1)
    b = torch.tensor([[3.0, 4.0, 0.0]]).repeat(5, 1)  # unequal sizes, same point each
    res = wasserstein1(a, b)
    assert res["value"] == pytest.approx(5.0, rel=1e-12)
    assert res["n_x"] == 7 and res["n_y"] == 5 and res["ground_cost"] == "euclidean"


def test_w1_translation_of_a_set_is_the_shift_norm():
    # for a rigid translation by v, the identity coupling is optimal and W1 = |v|
    x = _gauss(200, 3, 1)
    v = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    assert wasserstein1(x, x + v)["value"] == pytest.approx(float(v.norm()), rel=1e-9)


def test_w1_one_dimensional_matches_scipy_and_ot_in_2d_embedding():
    x = _gauss(150, 1, 2)[:, 0]
    y = _gauss(230, 1, 3, shift=0.7)[:, 0]
    expected = wasserstein_distance(x.numpy(), y.numpy())
    assert wasserstein1(x, y)["value"] == pytest.approx(expected, rel=1e-12)
    # the same 1-D points embedded in 2-D (zero second coordinate) go through exact OT
    pad = lambda t: torch.stack([t, torch.zeros_like(t)], 1)  # noqa: E731
    assert wasserstein1(pad(x), pad(y))["value"] == pytest.approx(expected, rel=1e-9)


def test_mmd_zero_for_identical_and_grows_with_shift():
    x = _gauss(400, 4, 4)
    y = _gauss(400, 4, 5)
    # identical sets: MMD²_u = 2(mean_{i≠j} k − 1)/N exactly, a small negative number
    res = mmd(x, x, bandwidths=[1.0])
    off_diag = (torch.exp(-torch.cdist(x, x).square() / 2).sum() - 400) / (400 * 399)
    assert res["value"] == pytest.approx(float(2 * (off_diag - 1) / 400), rel=1e-6, abs=1e-9)
    assert -2 / 400 <= res["value"] <= 0
    values = [mmd(x, _gauss(400, 4, 5, shift=s), bandwidths=[1.0])["value"] for s in (0.0, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.01
    assert values[0] < values[1] < values[2] < values[3]
    res = mmd(x, y)
    assert res["bandwidth_rule"] == "median heuristic" and res["bandwidths"][0] > 0


def test_precision_recall_self_is_one_and_far_is_zero():
    x = _gauss(300, 3, 6)
    res = knn_precision_recall(x, x, k=5)
    assert res["value"] == {"precision": 1.0, "recall": 1.0}
    far = knn_precision_recall(x, x + 100.0, k=5)
    assert far["value"] == {"precision": 0.0, "recall": 0.0}
    dc = density_coverage(x, x, k=5)
    assert dc["value"]["coverage"] == 1.0
    # each ball B(x_i, r_k(x_i)) holds x_i and its k neighbours: density = (k + 1)/k without ties
    assert dc["value"]["density"] == pytest.approx(6 / 5, rel=1e-12)
    assert density_coverage(x, x + 100.0, k=5)["value"] == {"density": 0.0, "coverage": 0.0}


def test_precision_recall_detect_mode_dropping():
    # fake covers only half of the real support: precision high, recall about one half
    real = _gauss(600, 2, 7)
    fake = real[real[:, 0] > 0] + 0.0
    res = knn_precision_recall(real, fake, k=5)["value"]
    assert res["precision"] == 1.0
    assert 0.4 < res["recall"] < 0.65


def test_bad_input_errors():
    with pytest.raises(ValueError, match="dimension"):
        wasserstein1(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        mmd(torch.tensor([[float("nan")]] * 3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="k must"):
        knn_precision_recall(torch.zeros(3, 2), torch.zeros(3, 2), k=3)
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(torch.zeros(3, 2), torch.ones(3, 2), bandwidths=[0.0])
    with pytest.raises(ValueError, match="empty"):
        wasserstein1(np.zeros((0, 2)), np.zeros((3, 2)))


@pytest.mark.parametrize("chunk", [1, 2, 2048])
def test_nearest_neighbour_distances_both_ways_by_construction(chunk):
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    x_to_y, y_to_x = nearest_neighbour_distances(x, y, chunk)
    assert x_to_y.tolist() == [1.0, 2.0, math.sqrt(17.0)]
    assert y_to_x.tolist() == [1.0, 7.0]
    blocks = list(pairwise_blocks(x, y, chunk))
    assert [start for start, _ in blocks] == list(range(0, 3, chunk))
    assert torch.equal(torch.cat([d for _, d in blocks]), torch.cdist(x, y))
