"""Diffusion baseline on the same singular data, built on ``genlowdim.core``.

Core's EDM-preconditioned MLP denoiser (``core.precondition.MLPDenoiser``, noise code ¼ ln σ fed as
one input) is trained with ``core.losses.dsm_loss`` (EDM weighting, σ log-uniform on
[σ_min, σ_max]), sampled with a core sampler on ``core.schedules.sigmas_karras`` and scored with
``core.likelihood.pf_ode_log_likelihood``. It follows the VE denoiser contract ``denoiser(x, σ) -> x̂₀``.

The PF-ODE started at σ_start > 0 gives the model's density of the data blurred by N(0, σ_start² I):
with σ_start = σ̃ this is comparable with the perturbed-MLE density of Ỹ = X + σ̃ε̃.
"""
from __future__ import annotations

import time

import torch

from genlowdim.core.likelihood import pf_ode_log_likelihood
from genlowdim.core.losses import dsm_loss, sample_sigmas
from genlowdim.core.precondition import MLPDenoiser
from genlowdim.core.samplers import get_sampler
from genlowdim.core.schedules import sigmas_geometric, sigmas_karras
from genlowdim.likelihood.config import DiffusionConfig


def train_diffusion(x: torch.Tensor, settings: DiffusionConfig, generator: torch.Generator | None = None,
                    show_progress: bool = False) -> tuple[MLPDenoiser, float]:
    """Fit the denoiser to ``x: (n, D)`` by DSM; returns (denoiser, seconds). σ_data = RMS of x.

    Batches of ``min(batch_size, n)`` rows drawn with replacement, σ log-uniform on [σ_min, σ_max], EDM loss
    weight, Adam with cosine decay to 5% of ``lr``; the training engine runs it in memory."""
    from genlowdim.train import TrainSettings, fit, seed_from_generator

    sigma_data = float(x.square().mean().sqrt())
    model = MLPDenoiser(x.shape[1], settings.hidden, sigma_data, embed_dim=0).to(x.dtype)
    engine = TrainSettings(epochs=settings.steps, max_steps=settings.steps, lr=settings.lr,
                           batch_size=min(settings.batch_size, len(x)), batch_draw="replacement",
                           grad_clip_value=None, lr_schedule="cosine", min_lr=0.05 * settings.lr,
                           seed=seed_from_generator(generator), max_bad_steps=0)
    sigma_range = (settings.sigma_min, settings.sigma_max)

    def loss_fn(denoiser, x0, ctx):
        sigma = sample_sigmas(len(x0), sigma_range, ctx.generator, dtype=x0.dtype)
        return dsm_loss(denoiser, x0, sigma, weight="edm", sigma_data=sigma_data, generator=ctx.generator).mean(), {}

    start = time.perf_counter()
    fit(model, x, loss_fn=loss_fn, settings=engine, family="diffusion", quiet=not show_progress)
    return model.eval(), time.perf_counter() - start


@torch.no_grad()
def sample_diffusion(denoiser: MLPDenoiser, num: int, dim: int, settings: DiffusionConfig,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``num`` samples ``(num, dim)`` from N(0, σ_max² I) through the sampler down to σ = 0."""
    sigmas = sigmas_karras(settings.sample_steps, settings.sigma_min, settings.sigma_max)
    x = settings.sigma_max * torch.randn(num, dim, generator=generator)
    return get_sampler(settings.sampler)(denoiser, x, sigmas, generator=generator)


def diffusion_log_likelihood(denoiser: MLPDenoiser, y: torch.Tensor, sigma_start: float,
                             settings: DiffusionConfig) -> torch.Tensor:
    """log p_{σ_start}(y) per row of ``y: (B, D)`` (nats) by the PF-ODE with exact divergence."""
    if sigma_start <= 0:
        raise ValueError(f"sigma_start must be > 0 (the data distribution itself has no density), got {sigma_start}")
    sigmas = sigmas_geometric(settings.sigma_max, sigma_start, settings.likelihood_steps)
    return pf_ode_log_likelihood(denoiser, y, sigmas, divergence="exact").detach()

