"""Samplers for VE diffusion, written as functions of a denoiser (k-diffusion style).

Denoiser contract: ``denoiser(x, sigma, **extra_args) -> x0_hat`` of x's shape; x is ``(B, ...)`` (vectors
``(B, n)`` or atoms ``(N, 3)``). Samplers call it with a **0-dim** sigma tensor on x's device/dtype (one
level for the whole batch); a denoiser must also accept ``(B,)`` sigmas, broadcast as ``(B, 1, ..., 1)``
(:func:`genlowdim.core.batch.expand_sigma`). Score: ``(x0_hat - x) / sigma**2`` (VE: x = x0 + sigma eps).

Every sampler takes the denoiser, the initial ``x`` (already scaled by the caller, e.g.
``sigmas[0] * randn``), a descending 1-D ``sigmas`` tensor, and keyword-only ``generator`` (a
``torch.Generator`` **on x's device**; the only source of noise), ``callback`` (called after each update
with ``{"i", "x", "sigma", "denoised"}`` and more), ``extra_args`` (forwarded to the denoiser) and ``wrap``
(applied to x after every update; crystals map positions back into the cell). Each returns the final x.
Samplers leave autograd as the caller set it: run trained models under ``torch.no_grad()`` (otherwise the graph
grows across steps); a denoiser that needs gradients inside (a score by autograd) re-enables them itself.
"""
from __future__ import annotations

from typing import Callable

import torch

from .batch import expand_sigma

__all__ = [
    "CountingDenoiser",
    "SAMPLERS",
    "denoiser_from_score",
    "get_sampler",
    "sample_ald",
    "sample_ddim",
    "sample_euler_maruyama",
    "sample_ode_euler",
    "sample_ode_heun",
    "sample_pc",
    "score_from_denoiser",
]

Denoiser = Callable[..., torch.Tensor]


def score_from_denoiser(denoiser: Denoiser) -> Callable[..., torch.Tensor]:
    """Score function ``score(x, sigma, **kw) = (denoiser(x, sigma, **kw) - x) / sigma**2`` (Tweedie)."""

    def score(x, sigma, **extra_args):
        s = expand_sigma(sigma, x)
        return (denoiser(x, sigma, **extra_args) - x) / s**2

    return score


def denoiser_from_score(score_fn: Callable[..., torch.Tensor]) -> Denoiser:
    """Denoiser ``x + sigma**2 * score_fn(x, sigma, **kw)`` from a score model (e.g. CDVAE's decoder).

    A model that outputs the sigma-scaled score ``sigma * score`` is wrapped as
    ``denoiser_from_score(lambda x, s, **kw: model(x, s, **kw) / s)``.
    """

    def denoiser(x, sigma, **extra_args):
        s = expand_sigma(sigma, x)
        return x + s**2 * score_fn(x, sigma, **extra_args)

    return denoiser


class CountingDenoiser:
    """Wrap a denoiser and count its calls (``.calls``); benchmarks report decoder calls with it."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.calls = 0

    def __call__(self, x, sigma, **extra_args):
        self.calls += 1
        return self.denoiser(x, sigma, **extra_args)

    def reset(self) -> None:
        self.calls = 0


# ----------------------------------------------------------------------------------------------- helpers


def _check_inputs(name: str, x: torch.Tensor, sigmas, generator) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError(f"{name}: x must be a tensor with a batch dim, got {type(x).__name__}")
    sigmas = torch.as_tensor(sigmas, device=x.device, dtype=x.dtype)
    if sigmas.ndim != 1 or sigmas.numel() < 1:
        raise ValueError(f"{name}: sigmas must be a non-empty 1-D tensor, got shape {tuple(sigmas.shape)}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError(f"{name}: sigmas must be finite and >= 0")
    if (sigmas[:-1] <= 0).any():
        raise ValueError(f"{name}: only the last sigma may be 0")
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError(f"{name}: sigmas must be non-increasing (sigma_max first)")
    if generator is not None and torch.device(generator.device).type != x.device.type:
        raise ValueError(
            f"{name}: generator is on {generator.device} but x is on {x.device}; "
            "torch generators are device-bound, create it with torch.Generator(device=x.device)"
        )
    return sigmas


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _apply_wrap(x: torch.Tensor, wrap) -> torch.Tensor:
    return wrap(x) if wrap is not None else x


def _emit(callback, **info) -> None:
    if callback is not None:
        callback(info)


def _call(denoiser, x, sigma, extra_args):
    return denoiser(x, sigma, **(extra_args or {}))


# ---------------------------------------------------------------------------------------------- samplers


def sample_ald(
    denoiser, x, sigmas, *, n_steps_each=100, step_lr=1e-4, final_denoise=False,
    generator=None, callback=None, extra_args=None, wrap=None,
):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1; CDVAE's sampler).

    For each sigma_i (all > 0), ``n_steps_each`` steps of ``x <- x + s score + sqrt(2 s) z`` with
    ``s = step_lr (sigma_i / sigma_min)^2`` and sigma_min = sigmas[-1]. Decoder calls:
    ``len(sigmas) * n_steps_each`` (+1 with ``final_denoise``, which returns the Tweedie estimate
    ``denoiser(x, sigma_min)``). Callback per step: ``{"i", "step", "x", "sigma", "denoised"}``.
    """
    sigmas = _check_inputs("sample_ald", x, sigmas, generator)
    if sigmas[-1] <= 0:
        raise ValueError("sample_ald: sigmas must all be > 0 (do not append_zero for annealed Langevin)")
    if n_steps_each < 1 or step_lr <= 0:
        raise ValueError(f"sample_ald: need n_steps_each >= 1 and step_lr > 0, got {n_steps_each}, {step_lr}")
    sigma_min = sigmas[-1]
    for i, sigma in enumerate(sigmas):
        step = step_lr * (sigma / sigma_min) ** 2
        for j in range(n_steps_each):
            denoised = _call(denoiser, x, sigma, extra_args)
            score = (denoised - x) / sigma**2
            x = _apply_wrap(x + step * score + (2 * step).sqrt() * _noise(x, generator), wrap)
            _emit(callback, i=i, step=j, x=x, sigma=sigma, denoised=denoised)
    if final_denoise:
        x = _apply_wrap(_call(denoiser, x, sigma_min, extra_args), wrap)
    return x


def sample_euler_maruyama(denoiser, x, sigmas, *, generator=None, callback=None, extra_args=None, wrap=None):
    """Euler–Maruyama for the reverse VE SDE ``dx = -d(sigma^2) score + sqrt(d(sigma^2)) dW`` (Song et al.
    2021, Eq. 6 with g² dt = d(sigma²)).

    Step sigma_i -> sigma_{i+1}: ``x <- x + (sigma_i^2 - sigma_{i+1}^2) score + sqrt(sigma_i^2 - sigma_{i+1}^2) z``;
    the step into sigma = 0 drops the noise (it returns the denoised mean). sigmas should end in 0
    (e.g. :func:`sigmas_karras`). Decoder calls: ``len(sigmas) - 1``.
    """
    sigmas = _check_inputs("sample_euler_maruyama", x, sigmas, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x, denoised = _reverse_sde_step(denoiser, x, sigma, sigma_next, generator, extra_args, wrap)
        _emit(callback, i=i, x=x, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


def _reverse_sde_step(denoiser, x, sigma, sigma_next, generator, extra_args, wrap):
    """One Euler–Maruyama step of the reverse VE SDE from sigma to sigma_next (no noise into sigma = 0)."""
    denoised = _call(denoiser, x, sigma, extra_args)
    dvar = sigma**2 - sigma_next**2
    x = x + dvar * (denoised - x) / sigma**2
    if sigma_next > 0:
        x = x + dvar.sqrt() * _noise(x, generator)
    return _apply_wrap(x, wrap), denoised


def _langevin_corrector(denoiser, x, sigma, snr, generator, extra_args, wrap):
    """One Langevin corrector step with step size set by the signal-to-noise ratio (Song et al. 2021, Alg. 4):
    ``eps = 2 (snr ||z|| / ||score||)^2`` with norms per row of x, averaged over the batch."""
    denoised = _call(denoiser, x, sigma, extra_args)
    score = (denoised - x) / sigma**2
    z = _noise(x, generator)
    grad_norm = score.reshape(score.shape[0], -1).norm(dim=1).mean()
    noise_norm = z.reshape(z.shape[0], -1).norm(dim=1).mean()
    step = 2 * (snr * noise_norm / grad_norm.clamp_min(torch.finfo(x.dtype).tiny)) ** 2
    return _apply_wrap(x + step * score + (2 * step).sqrt() * z, wrap), denoised


def sample_pc(
    denoiser, x, sigmas, *, snr=0.16, n_corrector=1,
    generator=None, callback=None, extra_args=None, wrap=None,
):
    """Predictor–corrector sampling (Song et al. 2021, Alg. 2 for VE): at each sigma_i > 0, ``n_corrector``
    Langevin corrector steps (step size from ``snr``), then one reverse-diffusion predictor step to
    sigma_{i+1} (Euler–Maruyama, noise dropped into sigma = 0). Decoder calls:
    ``(len(sigmas) - 1) * (n_corrector + 1)``.
    """
    sigmas = _check_inputs("sample_pc", x, sigmas, generator)
    if snr <= 0 or n_corrector < 0:
        raise ValueError(f"sample_pc: need snr > 0 and n_corrector >= 0, got {snr}, {n_corrector}")
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        for _ in range(n_corrector):
            x, _ = _langevin_corrector(denoiser, x, sigma, snr, generator, extra_args, wrap)
        x, denoised = _reverse_sde_step(denoiser, x, sigma, sigma_next, generator, extra_args, wrap)
        _emit(callback, i=i, x=x, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


def sample_ode_euler(denoiser, x, sigmas, *, generator=None, callback=None, extra_args=None, wrap=None):
    """Euler steps of the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` (Karras et al.
    2022, Eq. 3 with sigma(t) = t). Deterministic (``generator`` is accepted and unused). Decoder calls:
    ``len(sigmas) - 1``.
    """
    sigmas = _check_inputs("sample_ode_euler", x, sigmas, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoiser, x, sigma, extra_args)
        x = _apply_wrap(x + (sigma_next - sigma) * (x - denoised) / sigma, wrap)
        _emit(callback, i=i, x=x, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


def sample_ode_heun(denoiser, x, sigmas, *, generator=None, callback=None, extra_args=None, wrap=None):
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1 without churn);
    the last step into sigma = 0 is a plain Euler step. Decoder calls: ``2 (len(sigmas) - 1) - 1`` when
    sigmas end in 0.
    """
    sigmas = _check_inputs("sample_ode_heun", x, sigmas, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoiser, x, sigma, extra_args)
        d = (x - denoised) / sigma
        x_euler = x + (sigma_next - sigma) * d
        if sigma_next > 0:
            d_next = (x_euler - _call(denoiser, x_euler, sigma_next, extra_args)) / sigma_next
            x_euler = x + (sigma_next - sigma) * (d + d_next) / 2
        x = _apply_wrap(x_euler, wrap)
        _emit(callback, i=i, x=x, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


def _ddim_noise_split(sigma, sigma_next, eta):
    """(sigma_down, sigma_up) of a VE DDIM step: sigma_up = eta sigma_next sqrt(sigma² - sigma_next²) / sigma,
    capped at sigma_next, and sigma_down² + sigma_up² = sigma_next² (Song, Meng & Ermon 2021, Eq. 16
    rewritten for x_VE = x_VP / sqrt(alpha_bar), alpha_bar = 1 / (1 + sigma²))."""
    sigma_up = torch.minimum(sigma_next, eta * sigma_next * (sigma**2 - sigma_next**2).clamp_min(0).sqrt() / sigma)
    return (sigma_next**2 - sigma_up**2).clamp_min(0).sqrt(), sigma_up


def sample_ddim(denoiser, x, sigmas, *, eta=0.0, generator=None, callback=None, extra_args=None, wrap=None):
    """DDIM in VE form: ``x <- D + sigma_down (x - D) / sigma + sigma_up z`` (see :func:`_ddim_noise_split`).

    ``eta = 0`` is deterministic and coincides with the Euler PF-ODE step (``sigma_down = sigma_next``);
    ``eta = 1`` is ancestral (DDPM-like) sampling, which plugs in the posterior mean only and so
    under-disperses with few steps. Decoder calls: ``len(sigmas) - 1``.
    """
    sigmas = _check_inputs("sample_ddim", x, sigmas, generator)
    if eta < 0:
        raise ValueError(f"sample_ddim: eta must be >= 0, got {eta}")
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoiser, x, sigma, extra_args)
        sigma_down, sigma_up = _ddim_noise_split(sigma, sigma_next, eta)
        x = denoised + sigma_down * (x - denoised) / sigma
        if sigma_up > 0:
            x = x + sigma_up * _noise(x, generator)
        x = _apply_wrap(x, wrap)
        _emit(callback, i=i, x=x, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


SAMPLERS = {
    "ald": sample_ald,
    "em": sample_euler_maruyama,
    "pc": sample_pc,
    "euler": sample_ode_euler,
    "heun": sample_ode_heun,
    "ddim": sample_ddim,
}


def get_sampler(name: str):
    """Sampler function by registry name (one of ``SAMPLERS``)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None
