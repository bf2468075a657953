"""EDM preconditioning against Karras et al. 2022, Table 1, at chosen σ; the MLP denoiser's wiring."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlowdim.core.precondition import MLPDenoiser, edm_scalings


@pytest.mark.parametrize("sigma, sigma_data, expected", [
    # σ = σ_d: c_skip = 1/2, c_out = σ_d/√2, c_in = 1/(σ_d√2)
    (0.5, 0.5, (0.5, 0.5 / math.sqrt(2), 1 / (0.5 * math.sqrt(2)), math.log(0.5) / 4)),
    # σ² + σ_d² = 10
    (3.0, 1.0, (0.1, 3 / math.sqrt(10), 1 / math.sqrt(10), math.log(3.0) / 4)),
    # σ = 0.002 ≪ σ_d: c_skip ≈ 1 − σ²/σ_d², c_out ≈ σ
    (0.002, 1.0, (1 / 1.000004, 0.002 / math.sqrt(1.000004), 1 / math.sqrt(1.000004), math.log(0.002) / 4)),
])
def test_edm_scalings_match_the_closed_forms(sigma, sigma_data, expected):
    got = edm_scalings(torch.tensor([sigma], dtype=torch.float64), sigma_data)
    for value, exact in zip(got, expected):
        assert float(value) == pytest.approx(exact, rel=1e-12)
    # c_out² = σ² σ_d² / (σ² + σ_d²) = σ² c_skip
    assert float(got.c_out ** 2) == pytest.approx(sigma ** 2 * float(got.c_skip), rel=1e-12)


class _Recorder(nn.Module):
    """Stands in for F: records its input, returns ones."""

    def forward(self, feats):
        self.seen = feats
        return torch.ones(feats.shape[0], feats.shape[1] - 1, dtype=feats.dtype)


def test_mlp_denoiser_applies_the_four_coefficients():
    model = MLPDenoiser(3, [8], sigma_data=0.5, embed_dim=0).double()
    model.net = _Recorder()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 4.0], dtype=torch.float64)
    c = edm_scalings(sigma[:, None], 0.5)
    out = model(x, sigma)
    assert torch.allclose(model.net.seen[:, :3], c.c_in * x, atol=1e-15)      # F sees c_in x ...
    assert torch.allclose(model.net.seen[:, 3:], c.c_noise, atol=1e-15)       # ... and ¼ ln σ
    assert torch.allclose(out, c.c_skip * x + c.c_out, atol=1e-15)            # D = c_skip x + c_out F


@pytest.mark.parametrize("embed_dim", [0, 16])
def test_zero_network_leaves_the_skip_connection_and_scalar_sigma_broadcasts(embed_dim):
    model = MLPDenoiser(5, [16, 16], sigma_data=1.0, embed_dim=embed_dim, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 5)
    with torch.no_grad():
        assert torch.allclose(model(x, 1e-6), x, atol=1e-5)   # c_skip → 1, c_out → 0 as σ → 0
        model.net[-1].weight.zero_()
        model.net[-1].bias.zero_()
        assert torch.allclose(model(x, 3.0), x / 10, atol=1e-7)   # c_skip(3) = 1/(9 + 1)
        assert torch.equal(model(x, torch.full((4,), 3.0)), model(x, 3.0))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="hidden"):
        MLPDenoiser(3, [])
