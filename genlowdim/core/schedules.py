"""Noise schedules as pure functions returning tensors (no hidden step index).

Convention: variance-exploding (VE) noise, ``x_sigma = x_0 + sigma * eps``. Every VE sampler in
:mod:`genlowdim.core.samplers` takes a descending 1-D tensor of sigmas. Variance-preserving (VP)
schedules ``x_t = s_t x_0 + sigma_t eps`` are given as ``(s_t, sigma_t)`` pairs and converted with
:func:`vp_to_ve_sigmas` (``sigma_VE = sigma_t / s_t``), since the VE and VP processes differ only by the
scaling ``x_VP = s_t x_VE``.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "append_zero",
    "sigmas_geometric",
    "sigmas_karras",
    "vp_linear",
    "vp_cosine",
    "vp_to_ve_sigmas",
]


def _check_range(name: str, sigma_min: float, sigma_max: float, num: int) -> None:
    if not (isinstance(num, int) and num >= 1):
        raise ValueError(f"{name}: num must be an integer >= 1, got {num!r}")
    if not (0.0 < float(sigma_min) <= float(sigma_max) and math.isfinite(float(sigma_max))):
        raise ValueError(
            f"{name}: need 0 < sigma_min <= sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Append a final 0 to a 1-D sigma tensor: ``(num,) -> (num + 1,)``, same device and dtype."""
    if sigmas.ndim != 1:
        raise ValueError(f"append_zero: sigmas must be 1-D, got shape {tuple(sigmas.shape)}")
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sigmas_geometric(
    sigma_max: float, sigma_min: float, num: int, *, device=None, dtype=None
) -> torch.Tensor:
    """Geometric (log-linear) sigmas from ``sigma_max`` down to ``sigma_min``, both included: ``(num,)``.

    NCSN (Song & Ermon 2019) and CDVAE use this grid; CDVAE: 10 -> 0.01 (Å), 50 levels. With ``num == 1``
    the single value is ``sigma_max``. No trailing zero (annealed Langevin needs sigma > 0 everywhere).
    """
    _check_range("sigmas_geometric", sigma_min, sigma_max, num)
    dtype = dtype or torch.get_default_dtype()
    if num == 1:
        return torch.tensor([float(sigma_max)], device=device, dtype=dtype)
    logs = torch.linspace(math.log(sigma_max), math.log(sigma_min), num, device=device, dtype=torch.float64)
    return logs.exp().to(dtype)


def sigmas_karras(
    num: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *, device=None, dtype=None
) -> torch.Tensor:
    """EDM noise levels (Karras et al. 2022, Eq. 5) followed by a final 0: ``(num + 1,)``.

    ``sigma_i = (sigma_max^(1/rho) + i/(num-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``, i < num.
    """
    _check_range("sigmas_karras", sigma_min, sigma_max, num)
    if rho <= 0:
        raise ValueError(f"sigmas_karras: rho must be > 0, got {rho}")
    dtype = dtype or torch.get_default_dtype()
    ramp = torch.linspace(0, 1, num, device=device, dtype=torch.float64) if num > 1 else torch.zeros(
        1, device=device, dtype=torch.float64
    )
    lo, hi = float(sigma_min) ** (1 / rho), float(sigma_max) ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return append_zero(sigmas.to(dtype))


def _as_time(t, device, dtype) -> torch.Tensor:
    if isinstance(t, torch.Tensor) and t.is_floating_point():
        t = t.to(device=device or t.device, dtype=dtype or t.dtype)  # a tensor keeps its dtype/device
    else:
        t = torch.as_tensor(t, device=device, dtype=dtype or torch.get_default_dtype())
    if torch.any((t < 0) | (t > 1)):
        raise ValueError("VP schedule: time t must lie in [0, 1]")
    return t


def vp_linear(t, beta_min: float = 0.1, beta_max: float = 20.0, *, device=None, dtype=None):
    """VP-SDE with linear beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021, Eq. 33).

    t: scalar or tensor in [0, 1]. Returns ``(s_t, sigma_t)`` of t's shape with
    ``s_t = exp(-t^2 (beta_max - beta_min)/4 - t beta_min/2)`` and ``sigma_t = sqrt(1 - s_t^2)``.
    """
    t = _as_time(t, device, dtype)
    log_s = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    s_t = log_s.exp()
    return s_t, (-torch.expm1(2 * log_s)).clamp_min(0).sqrt()


def vp_cosine(t, s: float = 0.008, *, device=None, dtype=None):
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17): alpha_bar(t) = f(t)/f(0), f = cos²((t+s)/(1+s)·π/2).

    t: scalar or tensor in [0, 1]. Returns ``(s_t, sigma_t) = (sqrt(alpha_bar), sqrt(1 - alpha_bar))``.
    At t = 1 alpha_bar is ~1e-9 rather than exactly 0 only through rounding; callers that convert to VE
    should stop before t = 1 (sigma_VE diverges there).
    """
    t = _as_time(t, device, dtype)
    f0 = math.cos(s / (1 + s) * math.pi / 2)
    s_t = (torch.cos((t + s) / (1 + s) * math.pi / 2) / f0).clamp(0, 1)
    return s_t, (1 - s_t**2).clamp_min(0).sqrt()


def vp_to_ve_sigmas(s_t: torch.Tensor, sigma_t: torch.Tensor) -> torch.Tensor:
    """Convert VP ``(s_t, sigma_t)`` to VE noise levels ``sigma_VE = sigma_t / s_t`` (same shape).

    A VP sample maps to the VE process by ``x_VE = x_VP / s_t``; a VE-trained denoiser is unchanged.
    """
    if torch.any(s_t <= 0):
        raise ValueError("vp_to_ve_sigmas: s_t must be > 0 (sigma_VE is infinite where s_t = 0)")
    return sigma_t / s_t
