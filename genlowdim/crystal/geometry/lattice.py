"""Lattice maths on batches of crystals, in pure torch (any device and dtype, differentiable).

Conventions shared by the whole package:

* a lattice is a ``(B, 3, 3)`` tensor whose **rows** are the lattice vectors a, b, c in Å;
* angles are in **degrees**: alpha = ∠(b, c), beta = ∠(a, c), gamma = ∠(a, b);
* atoms of all crystals of a batch are stacked, ``batch: (N,)`` long gives each atom's crystal;
* Cartesian coordinates are ``x = f @ L`` (f a row of fractional coordinates).

``lattice_from_params`` follows pymatgen's ``Lattice.from_parameters`` (c along z, a in the xz plane),
which is also the canonical orientation CDVAE rebuilds its lattices in, so both agree to rounding.
"""
from __future__ import annotations

import itertools

import torch

__all__ = [
    "lattice_from_params", "lattice_params", "frac_to_cart", "cart_to_frac", "lattice_volume",
    "lattice_heights", "min_image_frac_displacement", "min_image_cart_displacement",
    "expand_per_graph",
]


def _check_lattice(lattice: torch.Tensor, name: str = "lattice") -> None:
    if lattice.dim() != 3 or lattice.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must have shape (B, 3, 3), got {tuple(lattice.shape)}")


def _check_batch(n: int, batch: torch.Tensor, num_graphs: int, what: str) -> None:
    if batch.dim() != 1 or batch.shape[0] != n:
        raise ValueError(f"batch must have shape ({n},) to match {what}, got {tuple(batch.shape)}")
    if batch.dtype != torch.long:
        raise ValueError(f"batch must be a long tensor, got {batch.dtype}")
    if n and (int(batch.min()) < 0 or int(batch.max()) >= num_graphs):
        raise ValueError(f"batch holds crystal indices outside [0, {num_graphs}): "
                         f"min {int(batch.min())}, max {int(batch.max())}")


def expand_per_graph(values: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Per-crystal values ``(B, ...)`` -> per-atom values ``(N, ...)`` using ``batch: (N,)``."""
    if batch.dim() != 1:
        raise ValueError(f"batch must be one-dimensional (N,), got shape {tuple(batch.shape)}")
    _check_batch(batch.shape[0], batch, values.shape[0], "values")
    return values.index_select(0, batch)


def lattice_from_params(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Lattice matrices from parameters, pymatgen's ``Lattice.from_parameters`` convention.

    lengths: (B, 3) a, b, c in Å; angles: (B, 3) alpha, beta, gamma in degrees -> (B, 3, 3), rows a, b, c.
    a = (a sinβ, 0, a cosβ); b = (−b sinα cosγ*, b sinα sinγ*, b cosα); c = (0, 0, c), with
    cosγ* = (cosα cosβ − cosγ) / (sinα sinβ) (γ* is the reciprocal-lattice angle).
    """
    if lengths.shape[-1:] != (3,) or angles.shape != lengths.shape or lengths.dim() != 2:
        raise ValueError(f"lengths and angles must both be (B, 3), got {tuple(lengths.shape)} "
                         f"and {tuple(angles.shape)}")
    rad = torch.deg2rad(angles)
    cos, sin = torch.cos(rad), torch.sin(rad)
    cos_gs = ((cos[:, 0] * cos[:, 1] - cos[:, 2]) / (sin[:, 0] * sin[:, 1])).clamp(-1.0, 1.0)
    # sqrt'(0) is infinite: keep a floor so degenerate (flat) cells give finite gradients
    sin_gs = torch.sqrt((1.0 - cos_gs * cos_gs).clamp_min(torch.finfo(lengths.dtype).tiny))
    a, b, c = lengths.unbind(-1)
    zero = torch.zeros_like(a)
    va = torch.stack([a * sin[:, 1], zero, a * cos[:, 1]], dim=-1)
    vb = torch.stack([-b * sin[:, 0] * cos_gs, b * sin[:, 0] * sin_gs, b * cos[:, 0]], dim=-1)
    vc = torch.stack([zero, zero, c], dim=-1)
    return torch.stack([va, vb, vc], dim=1)


def _angle_deg(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    cosine = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))


def lattice_params(lattice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, 3) lattice -> (lengths (B, 3) Å, angles (B, 3) degrees: α=∠(b,c), β=∠(a,c), γ=∠(a,b))."""
    _check_lattice(lattice)
    a, b, c = lattice.unbind(1)
    lengths = lattice.norm(dim=-1)
    angles = torch.stack([_angle_deg(b, c), _angle_deg(a, c), _angle_deg(a, b)], dim=-1)
    return lengths, angles


def lattice_volume(lattice: torch.Tensor) -> torch.Tensor:
    """Cell volume |det L| in Å³, shape (B,)."""
    _check_lattice(lattice)
    return torch.linalg.det(lattice).abs()


def lattice_heights(lattice: torch.Tensor) -> torch.Tensor:
    """Perpendicular heights (B, 3) in Å: h_k = V / |a_i × a_j|, the spacing of the lattice planes
    spanned by the two other vectors. A sphere of radius r meets ceil(r / h_k) images along k."""
    _check_lattice(lattice)
    a, b, c = lattice.unbind(1)
    areas = torch.stack([torch.linalg.cross(b, c).norm(dim=-1), torch.linalg.cross(c, a).norm(dim=-1),
                         torch.linalg.cross(a, b).norm(dim=-1)], dim=-1)
    return lattice_volume(lattice).unsqueeze(-1) / areas


def frac_to_cart(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Fractional (N, 3) -> Cartesian (N, 3) Å: x_n = f_n @ L[batch[n]]."""
    _check_lattice(lattice)
    _check_batch(frac.shape[0], batch, lattice.shape[0], "frac")
    return torch.einsum("ni,nij->nj", frac, lattice.index_select(0, batch))


def cart_to_frac(cart: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Cartesian (N, 3) Å -> fractional (N, 3): f_n = x_n @ L[batch[n]]⁻¹ (not wrapped)."""
    _check_lattice(lattice)
    _check_batch(cart.shape[0], batch, lattice.shape[0], "cart")
    inverse = torch.linalg.inv(lattice)
    return torch.einsum("ni,nij->nj", cart, inverse.index_select(0, batch))


def min_image_frac_displacement(frac_a: torch.Tensor, frac_b: torch.Tensor) -> torch.Tensor:
    """Fractional minimum image: (a − b) wrapped into [−0.5, 0.5) per component, shape (N, 3).

    This is the minimum image *in fractional space*. For orthogonal and mildly skewed cells it is also
    the shortest Cartesian vector; for strongly skewed cells the shortest Cartesian image can lie at
    another integer shift -- use :func:`min_image_cart_displacement` when Cartesian length matters.
    """
    if frac_a.shape != frac_b.shape:
        raise ValueError(f"frac_a and frac_b shapes differ: {tuple(frac_a.shape)} vs {tuple(frac_b.shape)}")
    diff = frac_a - frac_b
    return diff - torch.floor(diff + 0.5)


_NEIGHBOUR_SHIFTS = list(itertools.product((-1, 0, 1), repeat=3))


def min_image_cart_displacement(frac_a: torch.Tensor, frac_b: torch.Tensor, lattice: torch.Tensor,
                                batch: torch.Tensor) -> torch.Tensor:
    """Shortest Cartesian vector (N, 3) Å from b to a over the 27 images around the fractional minimum
    image: min over s ∈ {−1,0,1}³ of ‖(w + s) @ L‖ with w = wrap(a − b).

    Exact for Niggli/Minkowski-reduced cells; for pathologically skewed (unreduced) cells the true
    minimum image may lie further out -- reduce the cell first. Gradients flow through the chosen image.
    """
    _check_lattice(lattice)
    _check_batch(frac_a.shape[0], batch, lattice.shape[0], "frac_a")
    wrapped = min_image_frac_displacement(frac_a, frac_b)
    shifts = wrapped.new_tensor(_NEIGHBOUR_SHIFTS)  # (27, 3)
    lat = lattice.index_select(0, batch)
    candidates = torch.einsum("nsi,nij->nsj", wrapped.unsqueeze(1) + shifts, lat)  # (N, 27, 3)
    best = candidates.detach().pow(2).sum(-1).argmin(dim=1)
    return candidates[torch.arange(candidates.shape[0], device=best.device), best]

