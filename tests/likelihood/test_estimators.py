"""Marginal log-likelihood estimators against the closed form of a linear-Gaussian model.

g(z) = A z + b with Z ~ N(0, I_d) and X = g(Z) + σε gives X ~ N(b, AAᵀ + σ²I) exactly.
"""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from genlowdim.likelihood.estimators import (FitSettings, fit_perturbed_mle, log_likelihood, perturb,
                                             quadrature_nodes)
from genlowdim.likelihood.model import GaussianEncoder, LatentGenerator


def linear_model(d, dim, sigma=0.3, seed=0):
    torch.manual_seed(seed)
    model = LatentGenerator(d, dim, hidden=(), prior="gaussian", sigma_init=sigma).double()
    return model


def exact_log_prob(model, y):
    lin = model.net[0]
    cov = lin.weight @ lin.weight.T + model.sigma**2 * torch.eye(model.ambient_dim, dtype=torch.float64)
    return MultivariateNormal(lin.bias, cov).log_prob(y)


def data_from(model, n, seed):
    return model.sample(n, torch.Generator().manual_seed(seed), with_noise=True)




def bulk_data(model, n, seed):
    """Points whose posterior sits in |z| < 2, where Φ⁻¹-mapped nodes are dense (quadrature in u-space
    resolves a posterior of width σ/|a| only where the node spacing 1/(Kφ(z)) is smaller)."""
    g = torch.Generator().manual_seed(seed)
    z = 4 * torch.rand(n, model.latent_dim, generator=g, dtype=torch.float64) - 2
    with torch.no_grad():
        return model(z) + model.sigma * torch.randn(n, model.ambient_dim, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("rule,nodes", [("midpoint", 2000), ("gauss_legendre", 400)])
def test_quadrature_d1_gaussian_prior_matches_closed_form(rule, nodes):
    model = linear_model(1, 5)
    y = bulk_data(model, 64, 1)
    with torch.no_grad():
        est = log_likelihood(model, y, "quadrature", num_nodes=nodes, rule=rule)
    assert torch.allclose(est.value, exact_log_prob(model, y), atol=1e-3)  # stated tolerance: 1e-3 nats


def segment_log_prob(model, y):
    """Uniform prior, linear g: p(y) = N(y_⊥; 0, σ²I_{D−1}) · [Φ(t/σ) − Φ((t − L)/σ)] / L with the
    segment g([0,1]) = {b + a z}, L = ‖a‖ and t = â·(y − b) (closed form of ∫₀¹ N(y; az + b, σ²I) dz)."""
    w, c, s = model.net[0].weight[:, 0], model.net[0].bias, model.sigma
    a, b = 2 * w, c - w  # the network sees 2z − 1
    length = a.norm()
    t = (y - b) @ a / length
    perp2 = (y - b).square().sum(1) - t**2
    normal = torch.distributions.Normal(0.0, 1.0)
    along = torch.log(normal.cdf(t / s) - normal.cdf((t - length) / s)) - torch.log(length)
    dim = y.shape[1]
    return along - 0.5 * perp2 / s**2 - (dim - 1) * (torch.log(s) + 0.5 * math.log(2 * math.pi))


@pytest.mark.parametrize("rule,nodes", [("midpoint", 2000), ("gauss_legendre", 400)])
def test_quadrature_uniform_prior_matches_segment_closed_form(rule, nodes):
    torch.manual_seed(3)
    model = LatentGenerator(1, 6, hidden=(), prior="uniform", sigma_init=0.1).double()
    y = model.sample(64, torch.Generator().manual_seed(2), with_noise=True)
    with torch.no_grad():
        est = log_likelihood(model, y, "quadrature", num_nodes=nodes, rule=rule)
        exact = segment_log_prob(model, y)
    assert torch.allclose(est.value, exact, atol=1e-3)


def test_quadrature_d2_tensor_grid_matches_closed_form():
    model = linear_model(2, 4, sigma=0.5)
    y = bulk_data(model, 32, 2)
    with torch.no_grad():
        est = log_likelihood(model, y, "quadrature", num_nodes=200, rule="gauss_legendre")
    # 200 x 200 Gauss-Legendre grid: measured error 5e-4 nats; the midpoint rule needs ~500 per axis
    assert torch.allclose(est.value, exact_log_prob(model, y), atol=1e-3)


@pytest.mark.parametrize("shared", [True, False])
def test_prior_importance_sampling_matches_closed_form(shared):
    model = linear_model(2, 6, sigma=0.8)
    y = data_from(model, 32, 3)
    with torch.no_grad():
        est = log_likelihood(model, y, "iw_prior", num_samples=20000, shared_draws=shared,
                             generator=torch.Generator().manual_seed(4))
    # Monte Carlo error of log p̂ ≈ sqrt(Var w / M)/p; stated tolerance 0.05 nats per point, 0.01 on the mean
    exact = exact_log_prob(model, y)
    assert (est.value - exact).abs().max() < 0.05
    assert (est.value - exact).mean().abs() < 0.01
    assert (est.ess > 10).all() and (est.ess <= 20000).all()


class ExactPosterior(torch.nn.Module):
    """q(z | y) = p(z | y) of the linear-Gaussian model (full covariance): zero-variance weights."""

    def __init__(self, model):
        super().__init__()
        a, s2 = model.net[0].weight, model.sigma.detach() ** 2
        self.precision = torch.eye(a.shape[1], dtype=a.dtype) + a.T @ a / s2
        self.cov = torch.linalg.inv(self.precision)
        self.a, self.b, self.s2 = a.detach(), model.net[0].bias.detach(), s2

    def sample(self, y, num, generator=None):
        mean = (y - self.b) @ self.a / self.s2 @ self.cov
        q = MultivariateNormal(mean[:, None, :].expand(-1, num, -1), self.cov)
        eps = torch.randn((y.shape[0], num, self.a.shape[1]), generator=generator, dtype=y.dtype)
        e = mean[:, None, :] + eps @ torch.linalg.cholesky(self.cov).T
        return e, q.log_prob(e)


def test_iwae_with_exact_posterior_is_exact_with_full_ess():
    model = linear_model(2, 6)
    y = data_from(model, 16, 5)
    with torch.no_grad():
        est = log_likelihood(model, y, "iw_encoder", num_samples=8, encoder=ExactPosterior(model),
                             generator=torch.Generator().manual_seed(6))
        elbo = log_likelihood(model, y, "elbo", num_samples=8, encoder=ExactPosterior(model),
                              generator=torch.Generator().manual_seed(6))
    exact = exact_log_prob(model, y)
    assert torch.allclose(est.value, exact, atol=1e-9)
    assert torch.allclose(elbo.value, exact, atol=1e-9)  # the ELBO is tight at the true posterior
    assert torch.allclose(est.ess, torch.full_like(est.ess, 8.0))


def test_elbo_below_iwae_below_truth_with_a_poor_encoder():
    model = linear_model(1, 4)
    y = data_from(model, 200, 7)
    torch.manual_seed(0)
    enc = GaussianEncoder(4, 1).double()
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        elbo = log_likelihood(model, y, "elbo", num_samples=64, encoder=enc, generator=gen).value.mean()
        iwae = log_likelihood(model, y, "iw_encoder", num_samples=64, encoder=enc, generator=gen).value.mean()
    exact = exact_log_prob(model, y).mean()
    assert elbo < iwae < exact + 0.01


def test_quadrature_nodes_weights_sum_to_one():
    for d, k in ((1, 7), (2, 5)):
        for rule in ("midpoint", "gauss_legendre"):
            u, log_w = quadrature_nodes(d, k, rule, torch.float64)
            assert u.shape == (k**d, d) and ((u > 0) & (u < 1)).all()
            assert float(log_w.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    # Gauss-Legendre with k nodes integrates polynomials of degree 2k-1 on [0,1] exactly
    u, log_w = quadrature_nodes(1, 4, "gauss_legendre", torch.float64)
    assert float((log_w.exp() * u[:, 0] ** 7).sum()) == pytest.approx(1 / 8, abs=1e-14)


def test_fit_recovers_a_linear_model_sigma():
    # data from a 1-D linear-Gaussian model with σ = 0.2; the MLE of σ over 600 points is within 8%
    truth = linear_model(1, 3, sigma=0.2, seed=1)
    x = data_from(truth, 600, 9).float()
    model = LatentGenerator(1, 3, hidden=(), prior="gaussian", sigma_init=0.6)
    fit_perturbed_mle(x, model, 0.0, FitSettings(method="iw_prior", num_samples=100, steps=200, lr=0.05),
                      torch.Generator().manual_seed(0))
    assert model.sigma.item() == pytest.approx(0.2, rel=0.08)


def test_sigma_floor_is_respected():
    x = torch.zeros(50, 3)  # a point mass: the unconstrained MLE drives σ → 0
    model = LatentGenerator(1, 3, hidden=(8,), sigma_init=0.5, sigma_floor=0.1)
    fit_perturbed_mle(x, model, 0.0, FitSettings(num_nodes=50, steps=200, lr=0.02))
    assert 0.1 <= model.sigma.item() < 0.11


def test_invalid_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="perturbation_std"):
        perturb(torch.zeros(3, 2), -0.1)
    with pytest.raises(ValueError, match="exceeds the ambient dimension"):
        LatentGenerator(3, 2)
    with pytest.raises(ValueError, match="unknown prior"):
        LatentGenerator(1, 2, prior="laplace")
    model = LatentGenerator(3, 5)
    with pytest.raises(ValueError, match="quadrature needs latent_dim 1 or 2"):
        log_likelihood(model, torch.zeros(2, 5), "quadrature")
    with pytest.raises(ValueError, match="unknown likelihood method"):
        log_likelihood(model, torch.zeros(2, 5), "laplace")
    with pytest.raises(ValueError, match="needs an encoder"):
        log_likelihood(model, torch.zeros(2, 5), "iw_encoder")
    with pytest.raises(ValueError, match=r"shape \(B, 5\)"):
        log_likelihood(model, torch.zeros(2, 4), "iw_prior")
