"""Diffusion baseline on the same singular data, built on ``genlowdim.core``.

A small MLP denoiser with EDM preconditioning (Karras et al. 2022, Table 1:
D(x, σ) = c_skip x + c_out F(c_in x, ¼ log σ), c_skip = σ_d²/(σ² + σ_d²), c_out = σ σ_d/√(σ² + σ_d²),
c_in = 1/√(σ² + σ_d²)) is trained with ``core.losses.dsm_loss`` (EDM weighting, σ log-uniform on
[σ_min, σ_max]), sampled with a core sampler on ``core.schedules.sigmas_karras`` and scored with
``core.likelihood.pf_ode_log_likelihood``. It follows the VE denoiser contract ``denoiser(x, σ) -> x̂₀``.

The PF-ODE started at σ_start > 0 gives the model's density of the data blurred by N(0, σ_start² I):
with σ_start = σ̃ this is comparable with the perturbed-MLE density of Ỹ = X + σ̃ε̃.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from genlowdim.core.likelihood import pf_ode_log_likelihood
from genlowdim.core.losses import dsm_loss, sample_sigmas
from genlowdim.core.samplers import get_sampler
from genlowdim.core.schedules import sigmas_geometric, sigmas_karras
from genlowdim.likelihood.config import DiffusionConfig


class MLPDenoiser(nn.Module):
    """EDM-preconditioned MLP denoiser: ``forward(x: (B, D), sigma: () or (B,)) -> (B, D)``."""

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128, 128), sigma_data: float = 0.5):
        super().__init__()
        sizes = [dim + 1, *hidden, dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.SiLU()] if i < len(sizes) - 2 else [])
        self.net = nn.Sequential(*layers)
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma, **_: object) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])[:, None]
        sd2, s2 = self.sigma_data**2, sigma**2
        c_skip, c_out = sd2 / (s2 + sd2), sigma * self.sigma_data / (s2 + sd2).sqrt()
        c_in = 1.0 / (s2 + sd2).sqrt()
        f = self.net(torch.cat([c_in * x, 0.25 * sigma.log()], dim=1))
        return c_skip * x + c_out * f


def train_diffusion(x: torch.Tensor, settings: DiffusionConfig, generator: torch.Generator | None = None,
                    show_progress: bool = False) -> tuple[MLPDenoiser, float]:
    """Fit the denoiser to ``x: (n, D)`` by DSM; returns (denoiser, seconds). σ_data = RMS of x."""
    from genlowdim.runtime import progress

    sigma_data = float(x.square().mean().sqrt())
    model = MLPDenoiser(x.shape[1], settings.hidden, sigma_data).to(x.dtype)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps, eta_min=0.05 * settings.lr)
    start = time.perf_counter()
    bar = {} if show_progress else {"disable": True}
    for _ in progress(range(settings.steps), desc="diffusion", **bar):
        idx = torch.randint(len(x), (min(settings.batch_size, len(x)),), generator=generator)
        sigma = sample_sigmas(len(idx), (settings.sigma_min, settings.sigma_max), generator, dtype=x.dtype)
        loss = dsm_loss(model, x[idx], sigma, weight="edm", sigma_data=sigma_data, generator=generator).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
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

