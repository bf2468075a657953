"""Jacobians of denoisers and their numerical rank (Wang et al. 2024's low-rank-Jacobian claim).

Numerical rank (the paper's rule): the smallest r with ``sqrt(Σ_{i≤r} s_i²) > energy · ||s||`` over the
singular values s (energy 0.99). Exact Jacobians come from autograd: batched through ``torch.func`` for
functional denoisers (:func:`denoiser_jacobians`), one reverse pass per output for models whose forward
``torch.func`` cannot trace (:func:`exact_jacobian`, e.g. a periodic radius graph built inside the forward).
For large inputs :func:`randomized_singular_values` sketches the spectrum with a few reverse/forward passes.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def numerical_rank(svals: torch.Tensor, energy: float = 0.99) -> int:
    """Smallest r with ``sqrt(Σ_{i≤r} s_i²) > energy · ||s||`` (singular values in any order)."""
    s2 = svals.detach().abs().sort(descending=True).values.pow(2)
    total = float(s2.sum())
    if total == 0:
        return 0
    cum = s2.cumsum(0).sqrt()
    return int((cum <= energy * math.sqrt(total)).sum()) + 1


def denoiser_jacobians(denoiser, x: torch.Tensor, sigma) -> torch.Tensor:
    """Jacobians ``∂D(x_b, σ)/∂x_b`` for each row of x: (B, n) -> (B, n, n) via torch.func."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)

    def single(v: torch.Tensor) -> torch.Tensor:
        return denoiser(v.unsqueeze(0), sigma).squeeze(0)

    return torch.func.vmap(torch.func.jacrev(single))(x)


def exact_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``∂fn(x)/∂x`` flattened to (m, n), m = fn(x).numel(), n = x.numel(); one reverse pass per output.

    Works for any differentiable ``fn`` (no ``torch.func`` tracing), so cost grows with m."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x).reshape(-1)
        rows = [torch.autograd.grad(out[i], x, retain_graph=i + 1 < out.numel(), allow_unused=True)[0]
                for i in range(out.numel())]
    return torch.stack([torch.zeros_like(x) if r is None else r for r in rows]).reshape(out.numel(), -1).detach()


def randomized_singular_values(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rank: int,
                               oversample: int = 5, generator: torch.Generator | None = None
                               ) -> tuple[torch.Tensor, float]:
    """Top singular values of J = ∂fn(x)/∂x from ``rank + oversample`` vector–Jacobian products (Halko et
    al. 2011 randomised range finder on Jᵀ, then exact products J q by double backward).

    Returns ``(svals (rank + oversample,), frobenius_sq)`` where ``frobenius_sq`` is the Hutchinson estimate
    ``mean_j ||Jᵀ ω_j||²`` of ``||J||_F²`` from the same Gaussian probes, so that :func:`numerical_rank` can
    be applied to ``svals`` completed by the unexplained energy (:func:`sketched_numerical_rank`)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x).reshape(-1)
        k = min(rank + oversample, out.numel(), x.numel())
        omega = torch.randn(k, out.numel(), generator=generator, dtype=out.dtype).to(out.device)
        jt_omega = torch.stack([torch.autograd.grad(out, x, w, retain_graph=True)[0].reshape(-1) for w in omega])
        frob_sq = float(jt_omega.pow(2).sum(1).mean())
        q = torch.linalg.qr(jt_omega.T)[0]                       # (n, k) basis of range(Jᵀ)
        # J q_j as the derivative of <u, J q_j> in u (double backward), so no forward-mode support is needed
        u = torch.zeros_like(out, requires_grad=True)
        g = torch.autograd.grad(out, x, u, create_graph=True)[0].reshape(-1)
        jq = torch.stack([torch.autograd.grad(g, u, qj, retain_graph=True)[0] for qj in q.T], dim=1)
    return torch.linalg.svdvals(jq.detach()), frob_sq


def sketched_numerical_rank(svals: torch.Tensor, frobenius_sq: float, energy: float = 0.99,
                            captured_tol: float = 1e-8) -> int:
    """:func:`numerical_rank` from the sketch's singular values and an estimate of ``||J||_F²``.

    When the smallest sketched value is below ``captured_tol`` times the largest, the sketch holds the whole
    spectrum and the rank is exact; otherwise the energy it misses (by the noisy Hutchinson estimate) counts
    as spread over further directions, so the rank is then at least len(svals) + 1 or a lower bound."""
    s2 = svals.detach().abs().sort(descending=True).values.pow(2)
    if s2.numel() and float(s2[-1]) <= captured_tol ** 2 * float(s2[0]):
        return numerical_rank(svals, energy)
    total = max(frobenius_sq, float(s2.sum()))
    if total == 0:
        return 0
    cum = s2.cumsum(0).sqrt()
    return int((cum <= energy * math.sqrt(total)).sum()) + 1
