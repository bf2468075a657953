"""LowRankMixture: exact posterior mean/score against Monte Carlo, Tweedie and Jacobian facts."""
from __future__ import annotations

import math

import pytest
import torch

from genlowdim.lowrank.mixture import LowRankMixture, random_bases


def _mixture(k=2, n=6, d=2, noise=0.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return LowRankMixture(random_bases(k, n, d, generator=gen), noise_std=noise), gen


def test_random_bases_are_orthonormal_and_mutually_orthogonal(generator):
    bases = random_bases(3, 10, 3, generator=generator)
    flat = bases.permute(1, 0, 2).reshape(10, 9)
    assert torch.allclose(flat.T @ flat, torch.eye(9, dtype=torch.float64), atol=1e-12)
    indep = random_bases(3, 10, 5, orthogonal=False, generator=generator)  # K·d > n is fine here
    assert torch.allclose(indep.transpose(1, 2) @ indep, torch.eye(5, dtype=torch.float64).expand(3, 5, 5),
                          atol=1e-12)


def test_samples_lie_on_the_subspaces_with_the_right_covariance(generator):
    mix, gen = _mixture(k=2, n=6, d=2)
    x, labels = mix.sample(20000, generator=gen, return_labels=True)
    coeffs = torch.einsum("bnd,bn->bd", mix.bases[labels], x)
    assert torch.allclose(torch.einsum("bnd,bd->bn", mix.bases[labels], coeffs), x, atol=1e-10)
    assert torch.allclose(coeffs.T @ coeffs / len(x), torch.eye(2, dtype=torch.float64), atol=0.04)
    assert abs(float(labels.double().mean()) - 0.5) < 0.02


@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_denoiser_matches_monte_carlo_posterior_mean(sigma):
    # self-normalised importance sampling with the prior as proposal: E[x0|x] = Σ p(x|x0_i) x0_i / Σ p(x|x0_i)
    mix, gen = _mixture(k=2, n=6, d=2, seed=1)
    x = mix.sample(3, generator=gen) + sigma * torch.randn(3, 6, generator=gen, dtype=torch.float64)
    draws = mix.sample(400_000, generator=gen)
    logw = -torch.cdist(x, draws).pow(2) / (2 * sigma ** 2)
    mc = torch.softmax(logw, dim=1) @ draws
    exact = mix.denoise(x, sigma)
    rel = (exact - mc).norm(dim=1) / exact.norm(dim=1)
    assert float(rel.max()) < 2e-2


def test_score_is_tweedie_and_the_gradient_of_the_log_density():
    mix, gen = _mixture(k=2, n=5, d=2, seed=2)
    sigma = 0.7
    x = torch.randn(8, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    cov = mix.bases @ mix.bases.transpose(1, 2) + sigma ** 2 * torch.eye(5, dtype=torch.float64)
    dist = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=mix.weights),
        torch.distributions.MultivariateNormal(torch.zeros(2, 5, dtype=torch.float64), cov))
    (grad,) = torch.autograd.grad(dist.log_prob(x).sum(), x)
    score = mix.score(x.detach(), sigma)
    assert torch.allclose(score, grad, atol=1e-10)
    assert torch.allclose(score, (mix.denoise(x.detach(), sigma) - x.detach()) / sigma ** 2, atol=1e-10)


def test_vp_form_reduces_to_ve_and_matches_scaling():
    # x_t = s x0 + γ ε  <=>  x_t / s = x0 + (γ/s) ε, so E[x0|x_t] = D_VE(x_t / s, γ / s)
    mix, gen = _mixture(k=2, n=6, d=2, seed=3)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    s, gamma = 0.8, 0.6
    assert torch.allclose(mix.denoise_vp(x, s, gamma), mix.denoise(x / s, gamma / s), atol=1e-12)
    assert torch.allclose(mix.denoise_vp(x, 1.0, gamma), mix.denoise(x, gamma), atol=1e-14)


def test_jacobian_kills_directions_orthogonal_to_all_subspaces():
    mix, gen = _mixture(k=2, n=8, d=2, seed=4)
    x = torch.randn(8, generator=gen, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: mix.denoise(v[None], 0.5)[0], x)
    r = torch.randn(8, generator=gen, dtype=torch.float64)
    flat = mix.bases.permute(1, 0, 2).reshape(8, 4)
    v = r - flat @ (flat.T @ r)
    assert float((jac @ v).norm()) < 1e-12 * float(v.norm()) + 1e-14
    assert float((jac @ flat[:, 0]).norm()) > 0.1


def test_single_subspace_jacobian_is_scaled_projector():
    mix, gen = _mixture(k=1, n=7, d=3, seed=5)
    sigma = 0.4
    x = torch.randn(7, generator=gen, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: mix.denoise(v[None], sigma)[0], x)
    u = mix.bases[0]
    assert torch.allclose(jac, u @ u.T / (1 + sigma ** 2), atol=1e-12)
    assert int(torch.linalg.matrix_rank(jac)) == 3


def test_noisy_mixture_posterior_mean_single_component():
    # η > 0, K = 1: x0 ~ N(0, UUᵀ + η² I), so E[x0|x] = C (C + σ² I)^{-1} x with C = UUᵀ + η² I
    mix, gen = _mixture(k=1, n=5, d=2, noise=0.1, seed=6)
    sigma = 0.5
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    c = mix.bases[0] @ mix.bases[0].T + 0.01 * torch.eye(5, dtype=torch.float64)
    expected = x @ torch.linalg.solve(c + sigma ** 2 * torch.eye(5, dtype=torch.float64), c).T
    assert torch.allclose(mix.denoise(x, sigma), expected, atol=1e-12)


def test_posterior_weights_pick_the_right_component_at_small_noise():
    mix, gen = _mixture(k=3, n=9, d=2, seed=7)
    x, labels = mix.sample(50, generator=gen, return_labels=True)
    weights = mix.posterior_weights(x + 0.01 * torch.randn(x.shape, generator=gen, dtype=x.dtype), 0.01)
    assert torch.equal(weights.argmax(dim=1), labels)
    assert torch.allclose(weights.sum(dim=1), torch.ones(50, dtype=torch.float64))


def test_invalid_settings_raise_clear_errors(generator):
    with pytest.raises(ValueError, match="exceeds ambient dimension"):
        random_bases(1, 3, 4, generator=generator)
    with pytest.raises(ValueError, match=r"K·d = 3·2 = 6 > n = 5"):
        random_bases(3, 5, 2, generator=generator)
    bases = random_bases(2, 6, 2, generator=generator)
    with pytest.raises(ValueError, match=r"bases\[1\]: columns are not orthonormal"):
        LowRankMixture(torch.stack([bases[0], 2 * bases[1]]))
    with pytest.raises(ValueError, match="sum to 1"):
        LowRankMixture(bases, weights=torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="noise_std"):
        LowRankMixture(bases, noise_std=-0.1)
    with pytest.raises(ValueError, match="exceeds ambient dimension"):
        LowRankMixture(torch.zeros(1, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(K, n, d\)"):
        LowRankMixture(torch.eye(3))
    assert math.isclose(float(LowRankMixture(bases).weights.sum()), 1.0)
