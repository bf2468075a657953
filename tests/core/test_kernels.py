"""Kernels against autograd of torch.distributions log-densities (float64) and exact identities."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from genlowdim.core.kernels import (
    gaussian_score,
    lowrank_gaussian_logpdf,
    lowrank_gaussian_score,
    molrg_denoise,
    molrg_logpdf,
    molrg_posterior_weights,
    molrg_score,
    wrapped_normal_images,
    wrapped_normal_logpdf,
    wrapped_normal_score,
)

from .helpers import molrg_dense, orthogonal_bases, random_bases, sample_molrg

F64 = torch.float64


def autograd_score(log_prob, x):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_prob(x).sum(), x)
    return grad


def test_gaussian_score_matches_autograd():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(5, 5, generator=g, dtype=F64)
    cov, mean = A @ A.T + 0.5 * torch.eye(5, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    x = torch.randn(7, 5, generator=g, dtype=F64)
    expected = autograd_score(MultivariateNormal(mean, cov).log_prob, x)
    torch.testing.assert_close(gaussian_score(x, mean, cov), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("orthonormal", [True, False])
def test_lowrank_gaussian_logpdf_and_score_match_dense(orthonormal):
    g = torch.Generator().manual_seed(2)
    n, d = 12, 3
    U = torch.randn(n, d, generator=g, dtype=F64)
    U = torch.linalg.qr(U)[0] if orthonormal else U
    variance, noise_var = torch.tensor([2.0, 0.7, 0.1], dtype=F64), 0.05
    mean = torch.randn(n, generator=g, dtype=F64)
    dense = MultivariateNormal(mean, U @ torch.diag(variance) @ U.T + noise_var * torch.eye(n, dtype=F64))
    x = torch.randn(9, n, generator=g, dtype=F64) * 2
    torch.testing.assert_close(lowrank_gaussian_logpdf(x, mean, U, variance, noise_var), dense.log_prob(x))
    torch.testing.assert_close(lowrank_gaussian_score(x, mean, U, variance, noise_var), autograd_score(dense.log_prob, x))


@pytest.mark.parametrize("noise_var,s", [(0.0, 1.0), (1e-2, 1.0), (1e-2, 0.6)])
def test_molrg_logpdf_score_and_weights_match_mixture_same_family(noise_var, s):
    bases, logw = random_bases(10, 3, 2, seed=3), torch.tensor([0.2, 0.5, 0.3], dtype=F64).log()
    sigma = 0.4
    dense = molrg_dense(bases, logw, sigma, s=s, noise_var=noise_var)
    x = torch.randn(16, 10, generator=torch.Generator().manual_seed(4), dtype=F64)
    torch.testing.assert_close(molrg_logpdf(x, bases, logw, sigma, s, noise_var), dense.log_prob(x))
    torch.testing.assert_close(molrg_score(x, bases, logw, sigma, s, noise_var), autograd_score(dense.log_prob, x))
    comp = dense.component_distribution.log_prob(x[:, None, :]) + logw
    torch.testing.assert_close(molrg_posterior_weights(x, bases, logw, sigma, s, noise_var), comp.softmax(-1))


def test_molrg_per_sample_sigma_equals_rowwise_calls():
    bases, logw = orthogonal_bases(8, 2, 2), torch.tensor([0.3, 0.7], dtype=F64).log()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(5), dtype=F64)
    sigmas = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=F64)
    rows = torch.cat([molrg_score(x[i : i + 1], bases, logw, sigmas[i]) for i in range(4)])
    torch.testing.assert_close(molrg_score(x, bases, logw, sigmas), rows)


def test_molrg_denoise_matches_monte_carlo_posterior_mean():
    # Self-normalised importance sampling from the prior: E[x0|xt] = sum_i w_i x0_i, w_i ∝ pi_k N(xt; x0_i, σ²),
    # stratified over k with 2^16 scrambled-Sobol Gaussian draws of a per component (plain Monte Carlo with
    # 10^6 draws only reaches ~3e-3; quasi-random draws reach ~1e-5 here).
    g = torch.Generator().manual_seed(6)
    bases, logw = orthogonal_bases(8, 2, 2), torch.tensor([0.3, 0.7], dtype=F64).log()
    sigma = 1.0
    u = torch.quasirandom.SobolEngine(2, scramble=True, seed=6).draw(2**16, dtype=F64)
    a = Normal(0.0, 1.0).icdf(u.clamp(1e-12, 1 - 1e-12))
    x0 = torch.einsum("knd,md->kmn", bases, a)  # (K, M, n)
    xt = sample_molrg(bases, logw, 6, g)[0] + sigma * torch.randn(6, 8, generator=g, dtype=F64)
    log_is = torch.stack([-0.5 * torch.cdist(xt, x0[k]).pow(2) / sigma**2 + logw[k] for k in range(2)], 1)
    mc = log_is.reshape(6, -1).softmax(-1) @ x0.reshape(-1, 8)
    exact = molrg_denoise(xt, bases, logw, sigma)
    rel = (mc - exact).norm(dim=1) / exact.norm(dim=1)
    assert rel.max() < 3e-4, rel


def test_tweedie_consistency_with_scale_and_ambient_noise():
    bases, logw = random_bases(10, 3, 2, seed=7), torch.zeros(3, dtype=F64)
    x = torch.randn(6, 10, generator=torch.Generator().manual_seed(8), dtype=F64)
    for s, sigma, eta2 in [(1.0, 0.3, 0.0), (0.8, 0.5, 0.02), (0.3, 2.0, 0.1)]:
        e = molrg_denoise(x, bases, logw, sigma, s, eta2)
        torch.testing.assert_close(molrg_score(x, bases, logw, sigma, s, eta2), (s * e - x) / sigma**2)


def test_jacobian_vanishes_orthogonal_to_all_subspaces():
    bases, logw = orthogonal_bases(12, 2, 3), torch.tensor([0.4, 0.6], dtype=F64).log()
    x = torch.randn(12, generator=torch.Generator().manual_seed(9), dtype=F64)
    J = torch.autograd.functional.jacobian(lambda y: molrg_denoise(y[None], bases, logw, 0.7)[0], x)
    span = bases.permute(1, 0, 2).reshape(12, 6)
    complement = torch.linalg.qr(torch.cat([span, torch.eye(12, dtype=F64)], 1))[0][:, 6:12]
    assert (J @ complement).abs().max() < 1e-12
    assert (J @ span).abs().max() > 0.1  # and it does act on the subspaces


def test_single_subspace_jacobian_is_scaled_projector():
    U = orthogonal_bases(9, 1, 3)
    x = torch.randn(9, generator=torch.Generator().manual_seed(10), dtype=F64)
    s, sigma = 0.7, 0.4
    J = torch.autograd.functional.jacobian(lambda y: molrg_denoise(y[None], U, torch.zeros(1, dtype=F64), sigma, s)[0], x)
    torch.testing.assert_close(J, s / (s**2 + sigma**2) * U[0] @ U[0].T)


def test_molrg_rejects_bad_input():
    bases = random_bases(6, 2, 2)
    x = torch.zeros(3, 6, dtype=F64)
    with pytest.raises(ValueError, match="orthonormal"):
        molrg_score(x, 2 * bases, torch.zeros(2, dtype=F64), 1.0)
    with pytest.raises(ValueError, match=r"shape \(B, 6\)"):
        molrg_score(torch.zeros(3, 5, dtype=F64), bases, torch.zeros(2, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="log_weights"):
        molrg_score(x, bases, torch.zeros(3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        molrg_score(x, bases, torch.zeros(2, dtype=F64), torch.ones(4, dtype=F64))


def _wrapped_reference(x, mu, sigma, images=40):
    ks = torch.arange(-images, images + 1, dtype=F64)
    return Normal(mu.unsqueeze(-1) + ks, sigma.unsqueeze(-1)).log_prob(x.unsqueeze(-1)).logsumexp(-1)


@pytest.mark.parametrize("sigma_value", [0.02, 0.3, 1.5])
def test_wrapped_normal_matches_image_sum_and_autograd(sigma_value):
    g = torch.Generator().manual_seed(11)
    x, mu = torch.rand(20, 3, generator=g, dtype=F64), torch.rand(20, 3, generator=g, dtype=F64)
    sigma = torch.full((20, 1), sigma_value, dtype=F64)
    ref = _wrapped_reference(x, mu, sigma.expand(20, 3))
    torch.testing.assert_close(wrapped_normal_logpdf(x, mu, sigma), ref, rtol=1e-10, atol=1e-10)
    expected = autograd_score(lambda y: _wrapped_reference(y, mu, sigma.expand(20, 3)), x)
    torch.testing.assert_close(wrapped_normal_score(x, mu, sigma), expected, rtol=1e-9, atol=1e-9)
    # periodic in x with period 1
    torch.testing.assert_close(wrapped_normal_score(x + 3.0, mu, sigma), wrapped_normal_score(x, mu, sigma))


def test_wrapped_normal_image_count_meets_stated_bound():
    for sigma, tol in [(0.05, 1e-12), (0.5, 1e-6), (0.5, 1e-14), (2.0, 1e-10)]:
        K = wrapped_normal_images(sigma, tol)
        ks = torch.arange(K + 1, K + 200, dtype=F64)
        assert 2 * torch.exp(-ks * (ks - 1) / (2 * sigma**2)).sum() <= tol
        x = torch.linspace(0, 1, 101, dtype=F64)
        err = (wrapped_normal_logpdf(x, torch.tensor(0.0, dtype=F64), torch.tensor(sigma, dtype=F64))
               - _wrapped_reference(x, torch.zeros(101, dtype=F64), torch.full((101,), sigma, dtype=F64), 80)).abs()
        assert err.max() <= tol + 1e-13
    assert wrapped_normal_images(0.05) == 1
    # a normalised density: integral over the unit interval is 1 (midpoint rule)
    grid = (torch.arange(4000, dtype=F64) + 0.5) / 4000
    total = wrapped_normal_logpdf(grid, torch.tensor(0.3, dtype=F64), torch.tensor(0.7, dtype=F64)).exp().mean()
    assert math.isclose(total.item(), 1.0, rel_tol=1e-10)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        wrapped_normal_images(0.0)


def test_lowrank_kernels_never_form_an_n_by_n_matrix():
    # n = 50,000: an n x n float64 matrix would need 20 GB; the Woodbury / projection paths need O(B n + n d).
    n, d = 50_000, 3
    g = torch.Generator().manual_seed(12)
    U = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=F64))[0]
    x = torch.randn(4, n, generator=g, dtype=F64)
    variance, noise_var = torch.tensor([3.0, 2.0, 1.0], dtype=F64), 0.5
    score = lowrank_gaussian_score(x, torch.zeros(n, dtype=F64), U, variance, noise_var)
    # closed form for orthonormal U: -(x - U U^T x)/eta - U diag(1/(v + eta)) U^T x
    proj = x @ U
    expected = -(x - proj @ U.T) / noise_var - (proj / (variance + noise_var)) @ U.T
    torch.testing.assert_close(score, expected)
    logp = lowrank_gaussian_logpdf(x, torch.zeros(n, dtype=F64), U, variance, noise_var)
    quad = ((x * x).sum(1) - (proj * proj).sum(1)) / noise_var + (proj**2 / (variance + noise_var)).sum(1)
    logdet = (n - d) * math.log(noise_var) + (variance + noise_var).log().sum()
    torch.testing.assert_close(logp, -0.5 * (quad + logdet + n * math.log(2 * math.pi)))
    w = molrg_posterior_weights(x, U[None], torch.zeros(1, dtype=F64), 0.3)
    torch.testing.assert_close(w, torch.ones(4, 1, dtype=F64))
