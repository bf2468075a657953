"""Training of MoLRG denoisers: core's denoising score-matching loss driven by the training engine.

Noise levels per sample: ``"loguniform"`` on ``[sigma_min, sigma_max]`` (low-rank model) or EDM's
``"lognormal"`` ``ln σ ~ N(p_mean, p_std²)`` (MLP). The loss is ``core.losses.dsm_loss``, i.e.
``½ λ(σ) ||D(x₀ + σ ε, σ) − x₀||² / σ⁴`` per sample (mean over coordinates), averaged over the batch; the
low-rank model uses ``λ = σ⁴`` (plain x₀ error, the loss of the paper's identity), the MLP EDM's weight.
For the low-rank model each Adam step is followed by a QR retraction of the bases (Stiefel manifold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from genlowdim.core.losses import dsm_loss
from genlowdim.train import LossFn, StepContext, TrainSettings, fit, seed_from_generator

from .model import LowRankDenoiser, mlp_denoiser


@dataclass(frozen=True)
class NoiseDistribution:
    """Training noise levels: kind ``loguniform`` (sigma_min, sigma_max) or ``lognormal`` (p_mean, p_std)."""

    kind: str = "loguniform"
    sigma_min: float = 0.05
    sigma_max: float = 2.0
    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self):
        if self.kind not in ("loguniform", "lognormal"):
            raise ValueError(f"noise distribution kind must be 'loguniform' or 'lognormal', got {self.kind!r}")
        if self.kind == "loguniform" and not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(f"noise distribution: need 0 < sigma_min <= sigma_max, got "
                             f"{self.sigma_min}, {self.sigma_max}")
        if self.kind == "lognormal" and self.p_std <= 0:
            raise ValueError(f"noise distribution: p_std must be > 0, got {self.p_std}")

    def sample(self, num: int, generator: torch.Generator | None, dtype, device) -> torch.Tensor:
        """(num,) noise levels σ."""
        u = torch.randn(num, generator=generator, dtype=dtype, device=device) if self.kind == "lognormal" \
            else torch.rand(num, generator=generator, dtype=dtype, device=device)
        if self.kind == "lognormal":
            return (self.p_mean + self.p_std * u).exp()
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return (lo + (hi - lo) * u).exp()


def x0_weight(sigma: torch.Tensor) -> torch.Tensor:
    """``λ(σ) = σ⁴``: turns core's score-error loss into ``½ ||D − x₀||²`` (per coordinate)."""
    return sigma ** 4


def dsm_loss_fn(noise: NoiseDistribution, weight: str | Callable[[torch.Tensor], torch.Tensor] = x0_weight,
                sigma_data: float = 0.5) -> LossFn:
    """The engine's ``loss_fn`` for a batch ``x0: (B, n)``: mean DSM loss at σ drawn from ``noise``."""
    def loss_fn(model: nn.Module, x0: torch.Tensor, ctx: StepContext):
        sigma = noise.sample(x0.shape[0], ctx.generator, x0.dtype, x0.device)
        loss = dsm_loss(model, x0, sigma, weight=weight, sigma_data=sigma_data, generator=ctx.generator)
        return loss.mean(), {}
    return loss_fn


def fit_denoiser(model: nn.Module, data: torch.Tensor, *, steps: int, batch_size: int, lr: float,
                 noise: NoiseDistribution, generator: torch.Generator | None = None,
                 weight: str | Callable[[torch.Tensor], torch.Tensor] = x0_weight, sigma_data: float = 0.5,
                 after_step: Callable[[], None] | None = None, desc: str | None = None,
                 log_every: int = 0, cosine: bool = True) -> list[float]:
    """Adam on the DSM loss over ``data: (N, n)``, driven by the training engine in memory.

    Batches of ``batch_size`` rows are drawn with replacement; the engine's seed is drawn from
    ``generator``. Returns the mean batch loss over each window of ``log_every`` steps (every step when
    ``log_every <= 0``). ``after_step`` runs after each optimiser step (e.g. a retraction); ``desc`` shows a
    progress bar. A non-finite loss or gradient stops the fit (:class:`genlowdim.train.TrainingDiverged`).
    """
    if steps < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"fit_denoiser: need steps >= 0, batch_size >= 1, lr > 0; got {steps}, "
                         f"{batch_size}, {lr}")
    # cosine decay to 0: Adam's normalised steps otherwise keep a random walk of size ~lr going around the
    # optimum (measured: bases drift 0.2-0.3 from the exact solution in 100 steps at a constant lr of 1e-3)
    settings = TrainSettings(epochs=max(steps, 1), max_steps=steps, batch_size=batch_size, lr=lr,
                             grad_clip_value=None, lr_schedule="cosine" if cosine else "plateau", min_lr=0.0,
                             log_every=max(log_every, 1), seed=seed_from_generator(generator), max_bad_steps=0,
                             batch_draw="replacement")
    result = fit(model, data, loss_fn=dsm_loss_fn(noise, weight, sigma_data), settings=settings,
                 family=desc or "fit_denoiser", quiet=desc is None, device=data.device,
                 post_step=(lambda _: after_step()) if after_step is not None else None)
    return [row["loss"] for row in result.history]


def train_lowrank(model: LowRankDenoiser, data: torch.Tensor, *, steps: int = 300, batch_size: int = 256,
                  lr: float = 1e-2, noise: NoiseDistribution | None = None,
                  generator: torch.Generator | None = None, desc: str | None = None) -> list[float]:
    """Train the paper's low-rank denoiser with Adam + QR retraction (bases stay orthonormal)."""
    return fit_denoiser(model, data.to(model.bases.dtype), steps=steps, batch_size=batch_size, lr=lr,
                        noise=noise or NoiseDistribution(), generator=generator,
                        after_step=model.retract, desc=desc)


def train_mlp(model: nn.Module, data: torch.Tensor, *, steps: int = 2000, batch_size: int = 256,
              lr: float = 1e-3, noise: NoiseDistribution | None = None,
              generator: torch.Generator | None = None, desc: str | None = None) -> list[float]:
    """Train an EDM-preconditioned MLP denoiser with EDM's noise distribution and loss weight."""
    sigma_data = float(getattr(model, "sigma_data", 1.0))
    dtype = next(model.parameters()).dtype
    return fit_denoiser(model, data.to(dtype), steps=steps, batch_size=batch_size, lr=lr,
                        noise=noise or NoiseDistribution(kind="lognormal"), generator=generator,
                        weight="edm", sigma_data=sigma_data, desc=desc, log_every=50)


@torch.no_grad()
def diffusion_loss(denoiser, data: torch.Tensor, sigmas: torch.Tensor, *, repeats: int = 64,
                   generator: torch.Generator | None = None) -> float:
    """Monte-Carlo ``mean_σ mean_i E_ε ||D(x_i + σ ε, σ) − x_i||²`` over given noise levels (L,)."""
    total = 0.0
    x0 = data.repeat(repeats, 1)
    for sigma in sigmas:
        sig = torch.full((x0.shape[0],), float(sigma), dtype=x0.dtype, device=x0.device)
        per_coord = dsm_loss(denoiser, x0, sig, weight=x0_weight, generator=generator)
        total += float(2 * x0.shape[1] * per_coord.mean())
    return total / len(sigmas)


# ------------------------------------------------------------------------------- one configured run


def build_model(cfg, generator: torch.Generator | None = None, init_bases: torch.Tensor | None = None):
    """Model of a ``RunConfig``: the low-rank denoiser (from ``init_bases`` when given) or the MLP."""
    data, m = cfg.data, cfg.model
    if m.kind == "mlp":
        return mlp_denoiser(data.ambient_dim, m, generator)
    if init_bases is not None:
        return LowRankDenoiser.from_bases(init_bases.to(torch.float32), mode=m.mode)
    return LowRankDenoiser(data.num_subspaces, data.ambient_dim, data.subspace_dim, mode=m.mode,
                           generator=generator)
