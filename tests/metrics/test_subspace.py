"""Subspace metrics against answers known by construction."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from genlowdim.metrics.subspace import (clustering_accuracy, distance_to_union, match_subspaces,
                                        principal_angles, projector_distance, recovery_success,
                                        subspace_error, subspace_recovery)


def _rotation_in_plane(n: int, i: int, j: int, theta: float) -> torch.Tensor:
    rot = torch.eye(n, dtype=torch.float64)
    rot[i, i] = rot[j, j] = math.cos(theta)
    rot[i, j], rot[j, i] = -math.sin(theta), math.sin(theta)
    return rot


def test_principal_angles_of_known_rotation():
    # span(e0, e1) against span(e0, R e1) with R rotating e1 towards e5 by 0.3 rad: angles {0, 0.3}
    eye = torch.eye(6, dtype=torch.float64)
    u = eye[:, :2]
    v = _rotation_in_plane(6, 1, 5, 0.3) @ u
    angles = principal_angles(u, v)
    assert torch.allclose(angles, torch.tensor([0.0, 0.3], dtype=torch.float64), atol=1e-12)
    # projector distance = sqrt(2) * ||sin θ||
    assert projector_distance(u, v) == pytest.approx(math.sqrt(2) * math.sin(0.3), abs=1e-12)


def test_principal_angles_match_scipy(generator):
    u = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    v = torch.randn(12, 4, generator=generator, dtype=torch.float64)
    ours = principal_angles(u, v).numpy()
    ref = np.sort(subspace_angles(u.numpy(), v.numpy()))
    assert np.allclose(ours, ref, atol=1e-10)


def test_tiny_angles_are_accurate():
    eye = torch.eye(5, dtype=torch.float64)
    v = _rotation_in_plane(5, 0, 4, 1e-9) @ eye[:, :2]
    assert float(principal_angles(eye[:, :2], v).max()) == pytest.approx(1e-9, rel=1e-5)


def test_matching_undoes_a_permutation(generator):
    q = torch.linalg.qr(torch.randn(10, 10, generator=generator, dtype=torch.float64))[0]
    truth = q[:, :9].reshape(10, 3, 3).permute(1, 0, 2)
    estimate = truth[[2, 0, 1]]
    matching, dist = match_subspaces(estimate, truth)
    assert matching == [1, 2, 0]
    assert subspace_error(estimate, truth) == pytest.approx(0.0, abs=1e-12)
    # orthogonal 3-dim subspaces are at projector distance sqrt(6)
    assert dist[0, 0] == pytest.approx(math.sqrt(6.0), abs=1e-12)
    result = subspace_recovery(estimate, truth)
    assert result.max_principal_angle == pytest.approx(0.0, abs=1e-7)
    assert result.as_dict()["params"]["num_true"] == 3
    assert recovery_success(estimate, truth) and not recovery_success(truth[[0, 0, 1]], truth)


def test_subspace_error_reports_the_worst_subspace():
    eye = torch.eye(8, dtype=torch.float64)
    truth = torch.stack([eye[:, :2], eye[:, 2:4]])
    tilted = _rotation_in_plane(8, 3, 7, 0.1) @ truth[1]
    est = torch.stack([truth[0], tilted])
    assert subspace_error(est, truth) == pytest.approx(math.sqrt(2) * math.sin(0.1), abs=1e-12)


def test_clustering_accuracy_is_label_permutation_invariant():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    assert clustering_accuracy(np.array([2, 2, 2, 0, 0, 1, 1, 1]), truth) == 1.0
    assert clustering_accuracy(np.array([2, 2, 0, 0, 0, 1, 1, 1]), truth) == pytest.approx(7 / 8)
    assert clustering_accuracy(torch.zeros(8, dtype=torch.long), truth) == pytest.approx(3 / 8)


def test_distance_to_union():
    eye = torch.eye(4, dtype=torch.float64)
    bases = torch.stack([eye[:, :1], eye[:, 1:2]])
    x = torch.tensor([[3.0, 0.0, 4.0, 0.0], [1.0, 2.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(distance_to_union(x, bases), torch.tensor([4.0, 1.0], dtype=torch.float64))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="ambient dimensions differ"):
        principal_angles(torch.zeros(3, 1), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="estimated subspaces"):
        match_subspaces(torch.eye(4)[None, :, :1], torch.stack([torch.eye(4)[:, :1]] * 2))
    with pytest.raises(ValueError, match="predictions"):
        clustering_accuracy([0, 1], [0, 1, 1])
