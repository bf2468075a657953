"""Latents of a crystal model with an encoder: encode crystals in batches, the ball that holds the training
crystals' posterior means, draws from the prior or the aggregate posterior, and Adam on z inside that ball.

Used by CSP (latent sources and refinement), property optimisation, generation aimed at a property and the
latent-structure analysis. The model needs the contract's latent hooks only: ``encode(batch, sample=False)
-> (mu, log_var, z)`` with mu, log_var (B, latent), and whatever ``objective`` reads from z.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch_geometric.data import Batch

__all__ = ["LatentPool", "encode_posterior", "encode_means", "encode_pool", "ball_radius", "draw_latents",
           "adam_in_ball"]


@dataclass
class LatentPool:
    """Aggregate posterior of encoded training crystals: mu, std (M, latent); ``radius``: the 0.99 quantile
    of ‖μ‖ (the ball the refinement keeps z in)."""
    mu: torch.Tensor
    std: torch.Tensor
    radius: float


@torch.no_grad()
def encode_posterior(model, items, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ), each (N, latent) on the model's device and dtype, of PyG crystals ``items``, ``batch_size``
    crystals per encoder call."""
    device = next(model.parameters()).device
    mus, stds = [], []
    for i in range(0, len(items), batch_size):
        mu, log_var, _ = model.encode(Batch.from_data_list(items[i:i + batch_size]).to(device), sample=False)
        mus.append(mu)
        stds.append(torch.exp(0.5 * log_var))
    return torch.cat(mus), torch.cat(stds)


def encode_means(model, items, batch_size: int = 256) -> torch.Tensor:
    """Posterior means μ (N, latent) of PyG items, float64 on the CPU."""
    return encode_posterior(model, items, batch_size)[0].double().cpu()


def ball_radius(mu: torch.Tensor, quantile: float = 0.99) -> float:
    """The ``quantile`` of ‖μ‖ over the rows of ``mu`` (N, latent): the ball where the decoder has seen the
    latents of real crystals."""
    return float(torch.quantile(mu.norm(dim=-1).double().cpu(), quantile))


def encode_pool(model, items, batch_size: int = 500, quantile: float = 0.99) -> LatentPool:
    """:class:`LatentPool` of crystals ``items`` (PyG ``Data``, e.g. the first training crystals)."""
    mu, std = encode_posterior(model, items, batch_size)
    return LatentPool(mu, std, ball_radius(mu, quantile))


def draw_latents(num: int, latent_dim: int, pool: LatentPool | None, generator, like: torch.Tensor) -> torch.Tensor:
    """(num, latent) draws: z ~ N(0, I), or z = μ_i + σ_i·ε with i uniform over ``pool`` (like: dtype/device)."""
    eps = torch.randn((num, latent_dim), generator=generator, device=like.device, dtype=like.dtype)
    if pool is None:
        return eps
    idx = torch.randint(0, pool.mu.shape[0], (num,), generator=generator, device=like.device)
    return pool.mu[idx].to(like) + pool.std[idx].to(like) * eps


def adam_in_ball(z0: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor], *, steps: int, lr: float,
                 radius: float | None = None,
                 on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Adam on z (B, latent) to lower ``objective(z).sum()``; after each step a z outside the ball
    ‖z‖ ≤ ``radius`` is scaled back onto it (None: unbounded). ``on_step(i, z)`` after update i (z
    detached). Returns the final z, detached."""
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for i in range(steps):
        opt.zero_grad()
        objective(z).sum().backward()
        opt.step()
        if radius is not None:
            with torch.no_grad():
                z.mul_((radius / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0))
        if on_step is not None:
            on_step(i, z.detach())
    return z.detach()
