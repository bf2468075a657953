"""The paper's low-rank denoiser: loss identity, training landscape, retraction; other denoisers."""
from __future__ import annotations

import pytest
import torch

from genlowdim.lowrank.clustering import spectral_init
from genlowdim.lowrank.mixture import LowRankMixture, random_bases
from genlowdim.lowrank.model import EmpiricalDenoiser, LowRankDenoiser, mlp_denoiser
from genlowdim.lowrank.synthetic import make_synthetic
from genlowdim.lowrank.train import NoiseDistribution, diffusion_loss, train_lowrank
from genlowdim.metrics.subspace import subspace_error


@pytest.mark.parametrize("s, gamma", [(1.0, 0.5), (0.8, 0.6), (0.3, 1.2)])
def test_loss_identity_by_monte_carlo(s, gamma):
    # E_ε||x_θ(s x0 + γ ε) − x0||² = ||x0||² − cs(2 − cs)||Uᵀx0||² + c²γ²d, c = s/(s²+γ²) (K = 1)
    gen = torch.Generator().manual_seed(0)
    n, d = 10, 3
    model = LowRankDenoiser.from_bases(random_bases(1, n, d, generator=gen))
    x0 = torch.randn(n, generator=gen, dtype=torch.float64)  # any point, on or off the subspace
    eps = torch.randn(400_000, n, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        out = model(s * x0 + gamma * eps, gamma, s=s)
    mc = (out - x0).pow(2).sum(1)
    c = s / (s ** 2 + gamma ** 2)
    proj = (model.bases[0].detach().T @ x0).pow(2).sum()
    exact = x0.pow(2).sum() - c * s * (2 - c * s) * proj + c ** 2 * gamma ** 2 * d
    assert float(mc.mean()) == pytest.approx(float(exact), abs=4 * float(mc.std()) / 400_000 ** 0.5)


def test_soft_model_at_true_bases_is_the_exact_posterior_mean():
    gen = torch.Generator().manual_seed(1)
    bases = random_bases(3, 12, 2, generator=gen)
    x = torch.randn(6, 12, generator=gen, dtype=torch.float64)
    model = LowRankDenoiser.from_bases(bases)
    with torch.no_grad():
        assert torch.allclose(model(x, 0.7), LowRankMixture(bases).denoise(x, 0.7), atol=1e-12)


def test_hard_model_projects_onto_the_most_energetic_subspace():
    eye = torch.eye(4, dtype=torch.float64)
    model = LowRankDenoiser.from_bases(torch.stack([eye[:, :2], eye[:, 2:]]), mode="hard")
    x = torch.tensor([[3.0, 1.0, 0.5, 0.5], [0.1, 0.0, 2.0, -1.0]], dtype=torch.float64)
    expected = torch.tensor([[3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, -1.0]], dtype=torch.float64) / 1.25
    with torch.no_grad():
        assert torch.allclose(model(x, 0.5), expected, atol=1e-12)


def test_retraction_keeps_bases_orthonormal_during_training():
    gen = torch.Generator().manual_seed(2)
    data = make_synthetic(2, 16, 2, 20, generator=gen)
    model = LowRankDenoiser(2, 16, 2, generator=gen)
    train_lowrank(model, data.x, steps=20, lr=1e-2, generator=gen)
    gram = model.bases.transpose(1, 2) @ model.bases
    assert torch.allclose(gram, torch.eye(2).expand(2, 2, 2), atol=1e-5)


def test_true_bases_have_lower_diffusion_loss_than_trained_solutions():
    # the ground truth is the population optimum; a stalled random start sits higher (docs/lowrank.md)
    gen = torch.Generator().manual_seed(3)
    data = make_synthetic(2, 16, 2, 20, generator=gen)
    random_start = LowRankDenoiser(2, 16, 2, generator=gen)
    train_lowrank(random_start, data.x, steps=300, lr=1e-2, generator=gen)
    init = spectral_init(data.x, 2, 2, generator=gen).bases
    warm = LowRankDenoiser.from_bases(init.float())
    train_lowrank(warm, data.x, steps=60, lr=3e-4, generator=gen)
    sigmas = torch.tensor([0.1, 0.3, 1.0])

    def loss(model):  # common random numbers: the same ε for every model
        return diffusion_loss(model, data.x.float(), sigmas, repeats=200, generator=torch.Generator().manual_seed(9))

    truth = LowRankDenoiser.from_bases(data.bases.float())
    assert loss(truth) < loss(random_start)
    assert loss(truth) <= loss(warm) + 1e-3
    assert subspace_error(warm.bases.detach().double(), data.bases) < 0.2


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_training_at_small_noise_refines_a_perturbed_start(mode):
    # measured: 0.49 -> 0.06 in 300 steps with σ in [0.05, 0.3]; with σ up to 2 the error stays ≈ 0.46
    gen = torch.Generator().manual_seed(0)
    data = make_synthetic(2, 24, 3, 20, generator=gen)
    start = torch.linalg.qr(data.bases + 0.04 * torch.randn(data.bases.shape, generator=gen, dtype=torch.float64))[0]
    assert subspace_error(start, data.bases) > 0.4
    model = LowRankDenoiser.from_bases(start.float(), mode=mode)
    train_lowrank(model, data.x, steps=300, lr=1e-2, generator=gen,
                  noise=NoiseDistribution(sigma_min=0.05, sigma_max=0.3))
    assert subspace_error(model.bases.detach().double(), data.bases) < 0.2


def test_mlp_from_config_has_the_configured_layers():
    from genlowdim.lowrank.config import ModelConfig

    model = mlp_denoiser(5, ModelConfig(kind="mlp", hidden=16, depth=2, sigma_data=0.5))
    widths = [(m.in_features, m.out_features) for m in model.net if isinstance(m, torch.nn.Linear)]
    assert widths == [(5 + 64, 16), (16, 16), (16, 5)] and model.sigma_data == 0.5
    with pytest.raises(ValueError, match="depth"):
        mlp_denoiser(5, ModelConfig(kind="mlp", depth=0))


def test_empirical_denoiser_snaps_to_the_nearest_training_point():
    train = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    model = EmpiricalDenoiser(train)
    x = torch.tensor([[3.6, 0.3], [0.2, 0.1]])
    assert torch.allclose(model(x, 0.05), train[[1, 0]], atol=1e-6)
    # large noise: the posterior mean is the training mean
    assert torch.allclose(model(x, 1e4), train.mean(0).expand(2, 2), atol=1e-3)


def test_model_input_errors():
    with pytest.raises(ValueError, match="mode"):
        LowRankDenoiser(2, 8, 2, mode="median")
    with pytest.raises(ValueError, match="exceeds"):
        LowRankDenoiser(1, 3, 4)
    with pytest.raises(ValueError, match="sigma_min"):
        NoiseDistribution(sigma_min=0.5, sigma_max=0.1)
    with pytest.raises(ValueError, match="training points"):
        EmpiricalDenoiser(torch.zeros(0, 3))
