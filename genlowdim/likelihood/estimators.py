"""Marginal log-likelihood estimators for X = g(Z) + σε, and the noise-perturbed maximum-likelihood fit.

log p(y) = log ∫ N(y; g(z), σ²I) dP_Z(z) is computed, for a batch y: (B, D), by one of

- ``quadrature``: a fixed rule on the unit cube, log p(y) ≈ logsumexp_j [log w_j + log N(y; g(u_j), σ²I)]
  with midpoint or Gauss–Legendre nodes (d = 1) or their tensor grid (d = 2). g is evaluated once per
  node and shared by the batch. Deterministic; accurate when the node spacing (mapped through g) is
  small against σ.
- ``iw_prior``: importance-weighted Monte Carlo with the prior as proposal,
  log p(y) ≈ logsumexp_m log N(y; g(z_m), σ²I) − log M; by default the same M draws serve the whole batch
  (common random numbers: unbiased in p for every point, M network calls instead of B·M).
- ``iw_encoder``: importance sampling from an amortised Gaussian q(e | y) (the IWAE bound of Burda et al.
  2016, eq. 8): logsumexp_m [log N(y; g(e_m), σ²I) + log N(e_m; 0, I) − log q(e_m | y)] − log M.
- ``elbo`` (baseline, a lower bound, not a likelihood estimate): mean_m of the same log-weights.

Each returns an ``Estimate`` with the per-point values and the effective sample size
ESS = (Σ w)² / Σ w² of the normalised weights (Kong 1992), the standard diagnostic of the estimator.
Everything is vectorised over the batch and the M samples with ``logsumexp``.

The fit (``fit_perturbed_mle``) maximises the mean estimated log-likelihood of the perturbed data
Ỹ_i = X_i + σ̃ ε̃_i (σ̃ = 0: the plain MLE) with Adam, driven by the training engine (``genlowdim.train``)
in memory.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from genlowdim.likelihood.model import GaussianEncoder, LatentGenerator

METHODS = ("quadrature", "iw_prior", "iw_encoder", "elbo")
RULES = ("midpoint", "gauss_legendre")


class Estimate(NamedTuple):
    """``value: (B,)`` estimated log p(y); ``ess: (B,)`` effective sample size of the weights/nodes."""

    value: torch.Tensor
    ess: torch.Tensor


def quadrature_nodes(latent_dim: int, num_nodes: int, rule: str = "midpoint",
                     dtype: torch.dtype = torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``u: (K^d, d)`` in (0,1)^d and log-weights ``(K^d,)`` (weights sum to 1) for d ∈ {1, 2}.

    ``num_nodes`` K is the count per axis; d = 2 uses the tensor-product grid.
    """
    if latent_dim not in (1, 2):
        raise ValueError(f"quadrature needs latent_dim 1 or 2 (got {latent_dim}); use 'iw_prior' or "
                         "'iw_encoder' for larger latent dimensions")
    if rule not in RULES:
        raise ValueError(f"unknown quadrature rule {rule!r}; expected one of {list(RULES)}")
    if num_nodes < 2:
        raise ValueError(f"quadrature needs at least 2 nodes per axis, got {num_nodes}")
    if rule == "midpoint":
        nodes, weights = (np.arange(num_nodes) + 0.5) / num_nodes, np.full(num_nodes, 1.0 / num_nodes)
    else:
        x, w = np.polynomial.legendre.leggauss(num_nodes)
        nodes, weights = 0.5 * (x + 1.0), 0.5 * w
    u = torch.as_tensor(nodes, dtype=dtype, device=device)
    log_w = torch.as_tensor(np.log(weights), dtype=dtype, device=device)
    if latent_dim == 1:
        return u[:, None], log_w
    grid = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    return grid, (log_w[:, None] + log_w[None, :]).reshape(-1)


def gaussian_log_density(y: torch.Tensor, means: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log N(y_b; means_j, σ²I) for every pair: ``y: (B, D)``, ``means: (K, D)`` → ``(B, K)``.

    ‖y − m‖² is expanded as ‖y‖² + ‖m‖² − 2 y·m (one matmul, no (B, K, D) tensor).
    """
    dim = y.shape[-1]
    sq = (y.square().sum(-1)[:, None] + means.square().sum(-1)[None, :] - 2.0 * y @ means.T).clamp_min(0)
    return -0.5 * sq / sigma**2 - dim * torch.log(sigma) - 0.5 * dim * math.log(2 * math.pi)


def paired_gaussian_log_density(y: torch.Tensor, means: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log N(y_b; means_bm, σ²I): ``y: (B, D)``, ``means: (B, M, D)`` → ``(B, M)`` (no (B, M, D) temporary)."""
    dim = y.shape[-1]
    sq = (y.square().sum(-1)[:, None] + means.square().sum(-1)
          - 2.0 * torch.einsum("bd,bmd->bm", y, means)).clamp_min(0)
    return -0.5 * sq / sigma**2 - dim * torch.log(sigma) - 0.5 * dim * math.log(2 * math.pi)


def _ess(log_w: torch.Tensor) -> torch.Tensor:
    """ESS = exp(2·lse(log w) − lse(2 log w)) along the last axis."""
    return torch.exp(2 * torch.logsumexp(log_w, -1) - torch.logsumexp(2 * log_w, -1))


def log_likelihood_quadrature(model: LatentGenerator, y: torch.Tensor, num_nodes: int = 1000,
                              rule: str = "midpoint") -> Estimate:
    """Quadrature estimate of log p(y), ``y: (B, D)`` → ``Estimate`` (ESS counts effective nodes)."""
    u, log_w = quadrature_nodes(model.latent_dim, num_nodes, rule, y.dtype, y.device)
    terms = log_w[None, :] + gaussian_log_density(y, model.decode_unit(u), model.sigma)
    return Estimate(torch.logsumexp(terms, -1), _ess(terms))


def log_likelihood_prior_is(model: LatentGenerator, y: torch.Tensor, num_samples: int = 64,
                            generator: torch.Generator | None = None, shared: bool = True) -> Estimate:
    """Importance-weighted MC with the prior as proposal; ``shared`` reuses one set of M draws for the batch."""
    if not shared:
        z = model.sample_latent(y.shape[0] * num_samples, generator).reshape(y.shape[0], num_samples, -1)
        log_w = paired_gaussian_log_density(y, model(z), model.sigma)
    else:
        log_w = gaussian_log_density(y, model(model.sample_latent(num_samples, generator)), model.sigma)
    return Estimate(torch.logsumexp(log_w, -1) - math.log(num_samples), _ess(log_w))


def encoder_log_weights(model: LatentGenerator, encoder: GaussianEncoder, y: torch.Tensor,
                        num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """log w_bm = log N(y_b; g(e_bm), σ²I) + log N(e_bm; 0, I) − log q(e_bm | y_b): ``(B, M)``."""
    e, log_q = encoder.sample(y, num_samples, generator)  # (B, M, d), (B, M)
    log_lik = paired_gaussian_log_density(y, model.decode_base(e), model.sigma)
    log_prior = (-0.5 * e.square() - 0.5 * math.log(2 * math.pi)).sum(-1)
    return log_lik + log_prior - log_q


def log_likelihood(model: LatentGenerator, y: torch.Tensor, method: str = "quadrature", *,
                   num_nodes: int = 1000, rule: str = "midpoint", num_samples: int = 64,
                   encoder: GaussianEncoder | None = None, generator: torch.Generator | None = None,
                   shared_draws: bool = True) -> Estimate:
    """Dispatch to one estimator (see the module docstring); ``y: (B, D)`` → ``Estimate``."""
    if method not in METHODS:
        raise ValueError(f"unknown likelihood method {method!r}; expected one of {list(METHODS)}")
    if y.ndim != 2 or y.shape[1] != model.ambient_dim:
        raise ValueError(f"expected data of shape (B, {model.ambient_dim}), got {tuple(y.shape)}")
    if method == "quadrature":
        return log_likelihood_quadrature(model, y, num_nodes, rule)
    if method == "iw_prior":
        return log_likelihood_prior_is(model, y, num_samples, generator, shared_draws)
    if encoder is None:
        raise ValueError(f"method {method!r} needs an encoder")
    log_w = encoder_log_weights(model, encoder, y, num_samples, generator)
    value = log_w.mean(-1) if method == "elbo" else torch.logsumexp(log_w, -1) - math.log(num_samples)
    return Estimate(value, _ess(log_w))


def perturb(x: torch.Tensor, perturbation_std: float, generator: torch.Generator | None = None):
    """Ỹ = X + σ̃ ε̃ with ε̃ ~ N(0, I), drawn once (``x: (n, D)``; σ̃ = 0 returns x unchanged)."""
    if not math.isfinite(perturbation_std) or perturbation_std < 0:
        raise ValueError(f"perturbation_std (σ̃) must be a finite number >= 0, got {perturbation_std}")
    if perturbation_std == 0:
        return x.clone()
    return x + perturbation_std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


@dataclass
class FitSettings:
    """Optimisation and estimator settings of ``fit_perturbed_mle`` (mirrors the ``fit`` config section)."""

    method: str = "quadrature"
    num_nodes: int = 1000
    rule: str = "midpoint"
    num_samples: int = 64
    shared_draws: bool = True
    steps: int = 2000
    lr: float = 3e-3
    batch_size: int = 0  # 0 = full batch
    sigma_lr_scale: float = 10.0  # step size of log σ relative to lr
    log_every: int = 100


@dataclass
class FitResult:
    model: LatentGenerator
    encoder: GaussianEncoder | None
    perturbed: torch.Tensor
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _likelihood_loss_fn(settings: FitSettings, history: list[dict]):
    """The engine's ``loss_fn``: minus the mean estimated log-likelihood of the batch ``y: (B, D)``.

    The model is a ``ModuleDict`` with ``generator`` (and ``encoder``); rows of ``history`` (step, objective,
    σ, ESS) are recorded every ``settings.log_every`` steps and at the last step."""
    def loss_fn(modules: nn.ModuleDict, y: torch.Tensor, ctx):
        model, encoder = modules["generator"], modules["encoder"] if "encoder" in modules else None
        est = log_likelihood(model, y, settings.method, num_nodes=settings.num_nodes, rule=settings.rule,
                             num_samples=settings.num_samples, encoder=encoder, generator=ctx.generator,
                             shared_draws=settings.shared_draws)
        loss = -est.value.mean()
        if ctx.step % settings.log_every == 0 or ctx.step == settings.steps - 1:
            history.append({"step": ctx.step, "objective": -loss.item(), "sigma": model.sigma.item(),
                            "ess": est.ess.mean().item()})
        return loss, {}
    return loss_fn


def fit_perturbed_mle(x: torch.Tensor, model: LatentGenerator, perturbation_std: float,
                      settings: FitSettings, generator: torch.Generator | None = None,
                      encoder: GaussianEncoder | None = None, show_progress: bool = False) -> FitResult:
    """Maximise (1/n) Σ_i log p_{g,σ}(Ỹ_i) over g and σ (and q for 'iw_encoder'/'elbo') with Adam.

    ``x: (n, D)`` clean data; Ỹ = x + σ̃ε̃ is drawn once from ``generator``, which then seeds the training
    engine (Monte Carlo draws, minibatches). The learning rate decays by cosine annealing to 1% of ``lr``
    over ``settings.steps``. History rows record step, mean objective, σ and ESS.
    """
    from genlowdim.train import TrainSettings, fit, seed_from_generator

    if settings.method in ("iw_encoder", "elbo") and encoder is None:
        encoder = GaussianEncoder(model.ambient_dim, model.latent_dim).to(x.dtype)
    y = perturb(x, perturbation_std, generator)
    modules = nn.ModuleDict({"generator": model} | ({"encoder": encoder} if encoder is not None else {}))
    engine = TrainSettings(epochs=settings.steps, max_steps=settings.steps, lr=settings.lr,
                           batch_size=settings.batch_size if settings.batch_size > 0 else len(y),
                           batch_draw="replacement" if settings.batch_size > 0 else "permutation",
                           grad_clip_value=None, lr_schedule="cosine", min_lr=0.01 * settings.lr,
                           log_every=settings.log_every, seed=seed_from_generator(generator), max_bad_steps=0)
    result, start = FitResult(model, encoder, y), time.perf_counter()
    fit(modules, y, loss_fn=_likelihood_loss_fn(settings, result.history), settings=engine,
        family=f"fit σ̃={perturbation_std:g}", quiet=not show_progress, param_groups=_param_groups(settings))
    result.seconds = time.perf_counter() - start
    return result


def _param_groups(settings: FitSettings):
    """Adam groups: log σ gets ``sigma_lr_scale`` × lr. Adam moves each parameter by about lr per step;
    log σ must travel several units (σ: 0.5 → 0.01), so it gets its own, larger step size."""
    def groups(modules: nn.ModuleDict) -> list[dict]:
        sigma = modules["generator"].log_sigma_free
        others = [p for p in modules.parameters() if p is not sigma]
        return [{"params": others, "lr": settings.lr},
                {"params": [sigma], "lr": settings.lr * settings.sigma_lr_scale}]
    return groups
