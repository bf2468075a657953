"""Log-likelihood by the probability-flow ODE and the instantaneous change of variables.

Song et al. 2021 (Sec. 4.3, App. D.2) / FFJORD (Grathwohl et al. 2019): with the VE PF-ODE
``dx/dsigma = f(x, sigma) = (x - D(x, sigma)) / sigma`` (Karras et al. 2022, Eq. 3 with sigma(t) = t),
``d log p_sigma(x(sigma)) / dsigma = -div f = -(n - div_x D) / sigma``. Integrating x from sigma_min to
sigma_max gives

    log p_{sigma_min}(x) = log p_prior(x(sigma_max)) + int_{sigma_min}^{sigma_max} div f(x(sigma), sigma) dsigma.

Approximations (all controlled by the caller): the data density is read at sigma_min > 0 (p_{sigma_min} is
p_0 convolved with N(0, sigma_min² I)); the prior replaces p_{sigma_max} by N(0, sigma_max² I) (error
~ E||x_0||² / sigma_max²); the ODE is solved by Heun or RK4 on the given sigma grid; Hutchinson
divergence estimates are unbiased but noisy (exact divergence costs one backward pass per dimension).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["pf_ode_log_likelihood", "divergence_exact", "divergence_hutchinson"]


def divergence_exact(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """``(fn(x), div fn(x))``: value (B, ...) and the trace of each row's Jacobian (B,), by one
    backward pass per dimension (rows of x must not interact inside fn)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        flat = out.reshape(out.shape[0], -1)
        div = x.new_zeros(x.shape[0])
        for j in range(flat.shape[1]):
            (g,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=j + 1 < flat.shape[1])
            div = div + g.reshape(g.shape[0], -1)[:, j]
    return out.detach(), div.detach()


def divergence_hutchinson(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, probes: torch.Tensor):
    """``(fn(x), estimate of div fn(x))`` with probes ``(P, B, ...)``: mean over p of ``v_p^T J v_p``
    (Hutchinson 1989; unbiased for Rademacher or Gaussian v)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        est = x.new_zeros(x.shape[0])
        for p, v in enumerate(probes):
            (g,) = torch.autograd.grad(out, x, v, retain_graph=p + 1 < len(probes))
            est = est + (g * v).reshape(x.shape[0], -1).sum(1)
    return out.detach(), (est / len(probes)).detach()


def _gaussian_prior(x: torch.Tensor, sigma_max: torch.Tensor) -> torch.Tensor:
    n = x[0].numel()
    sq = x.reshape(x.shape[0], -1).pow(2).sum(1)
    return -0.5 * (sq / sigma_max**2 + n * math.log(2 * math.pi) + 2 * n * sigma_max.log())


def _drift_and_div(denoiser, x, sigma, divergence, probes, extra_args):
    """PF-ODE drift f = (x - D) / sigma and its divergence (n - div D) / sigma, each per row."""
    fn = lambda y: denoiser(y, sigma, **(extra_args or {}))  # noqa: E731
    if divergence == "exact":
        d, div_d = divergence_exact(fn, x)
    else:
        d, div_d = divergence_hutchinson(fn, x, probes)
    n = x[0].numel()
    return (x - d) / sigma, (n - div_d) / sigma


def _heun_step(field, x, s0, s1):
    f0, g0 = field(x, s0)
    f1, g1 = field(x + (s1 - s0) * f0, s1)
    return x + (s1 - s0) * (f0 + f1) / 2, (s1 - s0) * (g0 + g1) / 2


def _rk4_step(field, x, s0, s1):
    h, mid = s1 - s0, (s0 + s1) / 2
    f1, g1 = field(x, s0)
    f2, g2 = field(x + h / 2 * f1, mid)
    f3, g3 = field(x + h / 2 * f2, mid)
    f4, g4 = field(x + h * f3, s1)
    return x + h / 6 * (f1 + 2 * f2 + 2 * f3 + f4), h / 6 * (g1 + 2 * g2 + 2 * g3 + g4)


def _probes(x, divergence, num_probes, generator):
    if divergence == "exact":
        return None
    if divergence != "hutchinson":
        raise ValueError(f"pf_ode_log_likelihood: divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if num_probes < 1:
        raise ValueError(f"pf_ode_log_likelihood: num_probes must be >= 1, got {num_probes}")
    bits = torch.randint(0, 2, (num_probes,) + tuple(x.shape), generator=generator, device=x.device)
    return bits.to(x.dtype) * 2 - 1  # Rademacher, fixed along the trajectory


def pf_ode_log_likelihood(
    denoiser, x, sigmas, *, prior="gaussian", divergence="hutchinson", num_probes=1,
    method="heun", generator=None, extra_args=None,
) -> torch.Tensor:
    """log p(x) per sample, shape (B,), in nats for x's units (divide by n ln 2 for bits/dim).

    x: data ``(B, ...)`` (read as the state at sigma_min); sigmas: 1-D grid of noise levels > 0 (any order;
    integrated from the smallest to the largest, e.g. ``sigmas_geometric(100, 1e-3, 200)``). prior: "gaussian"
    (N(0, sigma_max² I)) or a callable ``prior(x, sigma_max) -> (B,)``. divergence: "exact" (one backward per
    dimension) or "hutchinson" with ``num_probes`` Rademacher probes drawn once with ``generator`` (on x's
    device). method: "heun" (2 denoiser calls per interval) or "rk4" (4).
    """
    sig = torch.as_tensor(sigmas, device=x.device, dtype=x.dtype)
    if sig.ndim != 1 or sig.numel() < 2 or (sig <= 0).any():
        raise ValueError("pf_ode_log_likelihood: sigmas must be a 1-D grid of at least 2 values, all > 0")
    sig = sig.sort().values
    if isinstance(prior, str) and prior != "gaussian" or not (isinstance(prior, str) or callable(prior)):
        raise ValueError(f"pf_ode_log_likelihood: prior must be 'gaussian' or a callable, got {prior!r}")
    step = {"heun": _heun_step, "rk4": _rk4_step}.get(method)
    if step is None:
        raise ValueError(f"pf_ode_log_likelihood: method must be 'heun' or 'rk4', got {method!r}")
    probes = _probes(x, divergence, num_probes, generator)
    field = lambda y, s: _drift_and_div(denoiser, y, s, divergence, probes, extra_args)  # noqa: E731
    delta = x.new_zeros(x.shape[0])
    for i in range(len(sig) - 1):
        x, d_logp = step(field, x.detach(), sig[i], sig[i + 1])
        delta = delta + d_logp
    prior_logp = _gaussian_prior(x, sig[-1]) if prior == "gaussian" else prior(x, sig[-1])
    if not isinstance(prior_logp, torch.Tensor) or prior_logp.shape != delta.shape:
        raise ValueError(f"pf_ode_log_likelihood: prior must be 'gaussian' or a callable returning ({x.shape[0]},)")
    return prior_logp + delta
