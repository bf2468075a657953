"""Q2: is the CDVAE decoder a low-rank denoiser? Numerical rank of its Jacobians along the noise levels.

For a crystal with latent z = μ (its posterior mean), the lattice the heads decode from z (with the true
number of atoms) and the true atom types, the coordinate denoiser of the sampler is
``x̂₀(x, σ) = x + σ · decoder(x, σ)`` on Cartesian positions x: (N, 3) (:class:`DecoderDenoiser`). At each
σ we evaluate it at x = x₀ + σε (x₀ the crystal's own positions in the decoded cell, ε seeded) and take:

* ``coord``: the numerical rank (energy 0.99, Wang et al. 2024) of the 3N × 3N Jacobian ∂x̂₀/∂x, exact by
  autograd for cells of up to ``exact_max_atoms`` atoms, a randomised estimate beyond;
* ``coord_internal``: the same for P J P with P the projector that removes rigid translations (the decoder
  is translation invariant, so J maps a common shift t of all atoms to t: three directions that any
  denoiser of a periodic crystal keeps);
* ``types``: the rank of the Jacobian of the type probabilities of the crystal's own elements
  (N·n_el × 3N) with respect to x.
The lattice is not denoised (a head maps z to it), so it has no curve along σ; ``lattice_head_rank`` is the
numerical rank of ∂(lattice head)/∂z (6 × latent) at each crystal's μ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Batch

from genlowdim.core.jacobian import (exact_jacobian, numerical_rank, randomized_singular_values,
                                     sketched_numerical_rank)
from genlowdim.crystal.geometry.lattice import lattice_from_params


@dataclass(frozen=True)
class JacobianSettings:
    num_crystals: int = 8
    num_sigmas: int = 12          # levels taken evenly (in log σ) from the model's noise levels
    energy: float = 0.99
    exact_max_atoms: int = 20     # exact Jacobians up to 3·20 = 60 outputs; randomised beyond
    sketch_rank: int = 30
    seed: int = 0


def translation_projector(num_atoms: int, dtype=torch.float64) -> torch.Tensor:
    """(3N, 3N) projector onto displacements with zero mean over the atoms (rigid shifts removed)."""
    mean = torch.kron(torch.full((num_atoms, num_atoms), 1.0 / num_atoms, dtype=dtype), torch.eye(3, dtype=dtype))
    return torch.eye(3 * num_atoms, dtype=dtype) - mean


def _crystal_functions(model, item, sigma: float):
    """(x₀: (N,3), coordinate denoiser x -> x̂₀, type-probability map x -> p(own elements)) of one crystal."""
    batch = Batch.from_data_list([item]).to(next(model.parameters()).device)
    z = model.encode(batch, sample=False)[0]
    lengths, angles = model.unscale_lattice(model.fc_lattice(z), batch.num_atoms)
    lattice = lattice_from_params(lengths, angles)
    x0 = batch.frac_coords @ lattice[0]
    sig = torch.full((1,), sigma, dtype=x0.dtype, device=x0.device)
    own = torch.unique(batch.atom_types) - 1

    def denoise(x):
        out, _ = model.decoder(x, batch.atom_types, z, sig, lattice, batch.batch)
        return x + sigma * out

    def type_probs(x):
        _, logits = model.decoder(x, batch.atom_types, z, sig, lattice, batch.batch)
        return torch.softmax(logits, -1)[:, own]

    return x0, denoise, type_probs, z


def _rank(fn, x, s: JacobianSettings, project: torch.Tensor | None = None, generator=None,
          svals_out: list | None = None) -> int:
    if x.shape[0] <= s.exact_max_atoms:
        jac = exact_jacobian(fn, x).double()
        if project is not None:
            jac = project @ jac @ project
        svals = torch.linalg.svdvals(jac)
        if svals_out is not None:
            svals_out.append([float(v) for v in svals])
        return numerical_rank(svals, s.energy)
    if project is not None:
        p = project.to(x.dtype)
        flat = lambda v: fn((p @ v.reshape(-1)).reshape(v.shape)).reshape(-1) @ p.T  # noqa: E731
        svals, frob = randomized_singular_values(flat, x, s.sketch_rank, generator=generator)
    else:
        svals, frob = randomized_singular_values(fn, x, s.sketch_rank, generator=generator)
    return sketched_numerical_rank(svals, frob, s.energy)


def sigma_grid(model_sigmas: torch.Tensor, num: int) -> list[float]:
    """``num`` of the model's noise levels, evenly spaced in index (the levels are geometric), descending."""
    idx = np.unique(np.linspace(0, len(model_sigmas) - 1, num).round().astype(int))
    return [float(model_sigmas[i]) for i in idx]


def jacobian_ranks(model, items, s: JacobianSettings) -> dict:
    """Per σ and crystal the numerical ranks (coord, coord_internal, types), their medians, and the lattice
    head's rank per crystal. ``items``: PyG crystals (the first ``num_crystals`` are used)."""
    gen = torch.Generator().manual_seed(s.seed)
    crystals = list(items)[: s.num_crystals]
    levels = []
    for sigma in sigma_grid(model.sigmas.cpu(), s.num_sigmas):
        per = {"coord": [], "coord_internal": [], "types": []}
        svals: list = []
        for item in crystals:
            x0, denoise, type_probs, _ = _crystal_functions(model, item, sigma)
            x = (x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)).detach()
            proj = translation_projector(x0.shape[0])
            per["coord"].append(_rank(denoise, x, s, generator=gen, svals_out=svals))
            per["coord_internal"].append(_rank(denoise, x, s, proj, generator=gen))
            per["types"].append(_rank(type_probs, x, s, generator=gen))
        levels.append({"sigma": sigma, **{k: v for k, v in per.items()},
                       **{f"median_{k}": float(np.median(v)) for k, v in per.items()},
                       # exact Jacobians only: the coordinate singular values per crystal (descending)
                       "coord_singular_values": svals})
    lattice_ranks = []
    for item in crystals:
        z = _crystal_functions(model, item, 1.0)[3].detach()
        lattice_ranks.append(numerical_rank(torch.linalg.svdvals(exact_jacobian(model.fc_lattice, z).double()),
                                            s.energy))
    return {"levels": levels, "num_atoms": [int(c.num_atoms) for c in crystals],
            "ambient_dim": [3 * int(c.num_atoms) for c in crystals],
            "lattice_head_rank": lattice_ranks,
            "params": {"energy": s.energy, "num_crystals": len(crystals), "point": "x0 + sigma * eps (seeded)",
                       "lattice": "decoded from z with the true number of atoms", "types": "true types",
                       "exact_max_atoms": s.exact_max_atoms, "sketch_rank": s.sketch_rank, "seed": s.seed}}
