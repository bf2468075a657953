"""dsm_loss against closed forms for Gaussian data, the per-graph reduction against a manual loop, sample_sigmas."""
import math

import pytest
import torch

from genlowdim.core import dsm_loss, sample_sigmas, sigmas_geometric

from .helpers import gaussian_denoiser

F64 = torch.float64


def expected_gaussian_loss(v, sigma, weight, sigma_data=0.5):
    """E of the per-element loss at the exact denoiser of N(0, v): E(D - x0)² = v sigma² / (v + sigma²), times
    1/2 lambda(sigma) / sigma^4."""
    mse = v * sigma**2 / (v + sigma**2)
    lam = {"sigma2": sigma**2, "unit": 1.0, "edm": sigma**2 * (sigma**2 + sigma_data**2) / sigma_data**2}[weight]
    return 0.5 * lam * mse / sigma**4


@pytest.mark.parametrize("weight", ["sigma2", "unit", "edm"])
def test_loss_at_exact_denoiser_equals_theoretical_minimum(weight):
    v, sigma = 1.5, 0.7
    g = torch.Generator().manual_seed(0)
    x0 = v**0.5 * torch.randn(40_000, 4, generator=g, dtype=F64)
    losses = dsm_loss(gaussian_denoiser(v), x0, torch.tensor(sigma, dtype=F64), weight=weight, generator=g)
    assert losses.shape == (40_000,)
    se = losses.std().item() / math.sqrt(len(losses))
    assert abs(losses.mean().item() - expected_gaussian_loss(v, sigma, weight)) < 4 * se
    # and it is the minimum: shrinking by any other factor costs more (same noise)
    noise = torch.randn(x0.shape, generator=g, dtype=F64)
    best = dsm_loss(gaussian_denoiser(v), x0, sigma, weight=weight, noise=noise).mean()
    for factor in (0.9, 1.1):
        other = lambda x, s, f=factor: f * gaussian_denoiser(v)(x, s)  # noqa: E731
        assert dsm_loss(other, x0, sigma, weight=weight, noise=noise).mean() > best


def test_sigma2_weight_is_ncsn_form_and_per_sample_sigma():
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0], dtype=F64)
    model = lambda x, s: 0.3 * x + s[:, None]  # noqa: E731  (per-sample sigma arrives as (B,))
    xs = x0 + sigma[:, None] * noise
    score = (model(xs, sigma) - xs) / sigma[:, None] ** 2
    manual = 0.5 * (sigma[:, None] * score + noise).pow(2).mean(1)  # Song & Ermon: 1/2 ||sigma s + eps||²
    torch.testing.assert_close(dsm_loss(model, x0, sigma, noise=noise), manual)
    weighted = dsm_loss(model, x0, sigma, noise=noise, weight=lambda s: 3 * s**2)
    torch.testing.assert_close(weighted, 3 * manual)


def test_per_graph_reduction_matches_manual_loop():
    g = torch.Generator().manual_seed(2)
    batch_index = torch.tensor([0, 0, 1, 1, 1, 3])  # graph 2 has no atoms; num_samples = 5 adds an empty graph 4
    x0, noise = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, 3, generator=g, dtype=F64)
    sigma = torch.tensor([0.2, 0.5, 1.0, 2.0, 3.0], dtype=F64)
    seen = {}

    def model(x, s, *, shift):
        seen["sigma"] = s
        return 0.5 * x + shift

    out = dsm_loss(model, x0, sigma, batch_index=batch_index, num_samples=5, noise=noise, extra_args={"shift": 0.1})
    torch.testing.assert_close(seen["sigma"], sigma[batch_index])  # per-graph sigma reaches atoms as (N,)
    expected = torch.zeros(5, dtype=F64)
    for graph in range(5):
        atoms = (batch_index == graph).nonzero().flatten().tolist()
        per_atom = []
        for i in atoms:
            s = sigma[graph]
            pred = 0.5 * (x0[i] + s * noise[i]) + 0.1
            per_atom.append(0.5 * s**2 * ((pred - x0[i]) / s**2).pow(2).sum())
        expected[graph] = sum(per_atom) / len(per_atom) if per_atom else 0.0
    torch.testing.assert_close(out, expected)


def test_dsm_loss_rejects_bad_input():
    x0, model = torch.zeros(4, 3), lambda x, s: x
    with pytest.raises(ValueError, match=r"sigma must be 0-dim or \(4,\)"):
        dsm_loss(model, x0, torch.ones(3))
    with pytest.raises(ValueError, match="noise has shape"):
        dsm_loss(model, x0, 1.0, noise=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="unknown weight 'l2'"):
        dsm_loss(model, x0, 1.0, weight="l2")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        dsm_loss(model, x0, 0.0)
    with pytest.raises(ValueError, match="one per graph"):
        dsm_loss(model, x0, torch.ones(3), batch_index=torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="denoiser returned shape"):
        dsm_loss(lambda x, s: x[:, :2], x0, 1.0)


def test_sample_sigmas_from_table_and_log_uniform():
    table = sigmas_geometric(10.0, 0.01, 50, dtype=F64)
    draws, idx = sample_sigmas(50_000, table, torch.Generator().manual_seed(3), return_index=True)
    torch.testing.assert_close(draws, table[idx])
    counts = torch.bincount(idx, minlength=50).double()
    assert (counts - 1000).abs().max() < 5 * math.sqrt(1000)  # uniform over levels (binomial SE ~ 31)
    again = sample_sigmas(50_000, table, torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, draws)
    lu = sample_sigmas(50_000, (0.01, 10.0), torch.Generator().manual_seed(4), dtype=F64)
    assert lu.min() >= 0.01 and lu.max() <= 10.0
    u = (lu.log() - math.log(0.01)) / (math.log(10.0) - math.log(0.01))  # uniform on [0, 1]
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    with pytest.raises(ValueError, match="0 < sigma_min <= sigma_max"):
        sample_sigmas(3, (1.0, 0.1))
    with pytest.raises(ValueError, match="table"):
        sample_sigmas(3, (0.1, 1.0), return_index=True)
