"""Denoising score matching (Vincent 2011; Song & Ermon 2019, Eq. 2) with per-sample reduction.

For x_sigma = x_0 + sigma eps the score target is ``-eps / sigma`` and the model's score is
``(D(x_sigma, sigma) - x_sigma) / sigma²``; their difference is ``(D - x_0) / sigma²``. The loss per element is
``1/2 lambda(sigma) ((D - x_0) / sigma²)²``:

* ``"sigma2"``: lambda = sigma² (NCSN, CDVAE): ``1/2 ||sigma score + eps||² = 1/2 ||D - x_0||² / sigma²``;
* ``"edm"``: lambda = sigma⁴ (sigma² + sigma_data²) / (sigma sigma_data)² (Karras et al. 2022, Eq. 8 on D);
* ``"unit"``: lambda = 1 (plain score error);
* a callable ``weight(sigma) -> lambda`` of sigma's shape.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .batch import expand_sigma, num_graphs, per_graph_to_nodes, per_sample_mean

__all__ = ["dsm_loss", "dsm_reduce", "dsm_weight", "sample_sigmas"]


def dsm_weight(sigma: torch.Tensor, weight: str | Callable = "sigma2", sigma_data: float = 0.5) -> torch.Tensor:
    """lambda(sigma) on the squared score error (see the module docstring); same shape as sigma."""
    if callable(weight):
        return torch.as_tensor(weight(sigma), device=sigma.device, dtype=sigma.dtype)
    if weight == "sigma2":
        return sigma**2
    if weight == "edm":
        return sigma**2 * (sigma**2 + sigma_data**2) / sigma_data**2
    if weight == "unit":
        return torch.ones_like(sigma)
    raise ValueError(f"dsm_loss: unknown weight {weight!r}; use 'sigma2', 'edm', 'unit' or a callable")


def _sigma_per_row(sigma, x0, batch_index, num_samples) -> tuple[torch.Tensor, int]:
    """sigma as one value per row of x0 (N,) or a 0-dim tensor; also the number of samples."""
    sigma = torch.as_tensor(sigma, device=x0.device, dtype=x0.dtype)
    if batch_index is None:
        if sigma.ndim not in (0,) and sigma.shape != (x0.shape[0],):
            raise ValueError(f"dsm_loss: sigma must be 0-dim or ({x0.shape[0]},), got {tuple(sigma.shape)}")
        return sigma, x0.shape[0]
    if batch_index.shape != (x0.shape[0],):
        raise ValueError(f"dsm_loss: batch_index must have shape ({x0.shape[0]},), got {tuple(batch_index.shape)}")
    G = num_graphs(batch_index, num_samples)
    if sigma.ndim == 0:
        return sigma, G
    if sigma.shape != (G,):
        raise ValueError(f"dsm_loss: for graphs sigma must be 0-dim or one per graph ({G},), got {tuple(sigma.shape)}")
    return per_graph_to_nodes(sigma, batch_index), G


def dsm_loss(
    denoiser, x0, sigma, *, batch_index=None, num_samples=None, weight="sigma2", sigma_data=0.5,
    noise=None, generator=None, extra_args=None,
) -> torch.Tensor:
    """Per-sample denoising score-matching loss, shape (B,) for vectors or (G,) for graphs.

    x0: clean data ``(B, ...)``, or node positions ``(N, 3)`` with ``batch_index: (N,)`` (graphs; G graphs,
    ``num_samples`` overrides G so that empty trailing graphs count). sigma: 0-dim, ``(B,)``, or ``(G,)``
    per graph (then passed to the denoiser per node, ``(N,)``). noise: eps of x0's shape, or drawn with
    ``generator`` (on x0's device). Reduction: vectors average the elementwise loss over feature dims;
    graphs sum it over each node's features and average over the graph's nodes (CDVAE's coordinate loss).
    """
    sigma_rows, _ = _sigma_per_row(sigma, x0, batch_index, num_samples)
    if (sigma_rows <= 0).any():
        raise ValueError("dsm_loss: sigma must be > 0")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    elif noise.shape != x0.shape:
        raise ValueError(f"dsm_loss: noise has shape {tuple(noise.shape)}, x0 has {tuple(x0.shape)}")
    s = expand_sigma(sigma_rows, x0)
    denoised = denoiser(x0 + s * noise, sigma_rows, **(extra_args or {}))
    if denoised.shape != x0.shape:
        raise ValueError(f"dsm_loss: denoiser returned shape {tuple(denoised.shape)}, expected {tuple(x0.shape)}")
    elementwise = 0.5 * dsm_weight(s, weight, sigma_data) * (denoised - x0).pow(2) / s**4
    return dsm_reduce(elementwise, batch_index, num_samples)


def dsm_reduce(elementwise: torch.Tensor, batch_index=None, num_samples=None) -> torch.Tensor:
    """The DSM loss's per-sample reduction of an elementwise loss: vectors ``(B, ...)`` average over the
    feature dims -> (B,); graphs (``(N, ...)`` with ``batch_index: (N,)``) sum over each node's features and
    average over the graph's nodes -> (G,) (CDVAE's coordinate loss)."""
    if batch_index is None:
        return per_sample_mean(elementwise)
    per_node = elementwise.reshape(elementwise.shape[0], -1).sum(1)
    return per_sample_mean(per_node, batch_index, num_samples)


def sample_sigmas(
    num: int, sigmas, generator: torch.Generator | None = None, *, device=None, dtype=None,
    return_index: bool = False,
):
    """One noise level per sample, shape (num,).

    sigmas: a 1-D table (e.g. :func:`sigmas_geometric`) -> a uniformly drawn entry (CDVAE: one level index per
    crystal); or a pair ``(sigma_min, sigma_max)`` -> log-uniform on [sigma_min, sigma_max]. With
    ``return_index`` a table draw also returns the indices (num,) so that paired tables (e.g. CDVAE's
    sigma_type) use the same level. Device defaults to the generator's (or the table's).
    """
    if isinstance(sigmas, torch.Tensor) and sigmas.ndim == 1:
        device = device or sigmas.device
        idx = torch.randint(len(sigmas), (num,), generator=generator, device=device)
        out = sigmas.to(device=device, dtype=dtype or sigmas.dtype)[idx]
        return (out, idx) if return_index else out
    if return_index:
        raise ValueError("sample_sigmas: return_index needs a table of sigmas")
    try:
        lo, hi = (float(v) for v in sigmas)
    except (TypeError, ValueError):
        raise ValueError("sample_sigmas: sigmas must be a 1-D tensor table or a (sigma_min, sigma_max) pair") from None
    if not 0 < lo <= hi:
        raise ValueError(f"sample_sigmas: need 0 < sigma_min <= sigma_max, got ({lo}, {hi})")
    device = device or (generator.device if generator is not None else None)
    u = torch.rand(num, generator=generator, device=device, dtype=dtype or torch.get_default_dtype())
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
