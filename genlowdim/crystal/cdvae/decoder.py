"""Noise-conditional CDVAE decoder: σ-scaled coordinate score (l=1, equivariant) + atom-type logits.

CDVAE (Xie et al. 2022, §3.2) decodes with a score network on the noisy crystal: for each atom it outputs a
vector s_i whose division by σ estimates the score ∇_{x_i} log p_σ(x̃ | z) in Cartesian space (its "direct
force"), and 100 logits of the atom's type. Here the network is an e3nn stack on the periodic radius graph of
the *noisy* positions, rebuilt at every call; z (and an embedding of log σ) is concatenated to the atom
embedding, so the scalar inputs are invariant and the vector output is read from the l=1 channels by an e3nn
linear layer: it rotates with the input and is unchanged by translations, permutations or image choice.
"""
from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from genlowdim.crystal.cdvae.config import GraphNetConfig
from genlowdim.crystal.geometry.encoder import MAX_ATOMIC_NUM, build_stack, run_stack
from genlowdim.crystal.geometry.graph import periodic_radius_graph
from genlowdim.crystal.geometry.layers import EdgeFeatures


class SigmaEmbedding(nn.Module):
    """Fourier features of log σ: (B,) -> (B, 2·num_freqs). Frequencies are fixed (a buffer)."""

    def __init__(self, num_freqs: int = 8):
        super().__init__()
        self.register_buffer("freqs", torch.arange(1, num_freqs + 1, dtype=torch.get_default_dtype()) * 0.5)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        arg = torch.log(sigma)[:, None] * self.freqs.to(sigma.dtype)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class CrystalDecoder(nn.Module):
    """``forward(pos, atom_types, z, sigma, lattice, batch) -> (coord_out: (N,3) Å, type_logits: (N,100))``.

    ``pos``: (N,3) noisy Cartesian positions (Å); ``atom_types``: (N,) atomic numbers 1..100; ``z``:
    (B, latent); ``sigma``: (B,) coordinate noise level (Å); ``lattice``: (B,3,3); ``batch``: (N,).
    ``coord_out / σ`` is the score estimate (Å⁻¹ units after the division by σ², CDVAE's convention), so
    the VE posterior mean is x̂₀ = x + σ·coord_out.
    """

    def __init__(self, cfg: GraphNetConfig, latent_dim: int, sigma_freqs: int = 8):
        super().__init__()
        self.cfg = cfg
        self.atom_embedding = nn.Embedding(MAX_ATOMIC_NUM + 1, cfg.num_scalars)
        self.sigma_embedding = SigmaEmbedding(sigma_freqs)
        self.input_mlp = nn.Sequential(
            nn.Linear(cfg.num_scalars + latent_dim + 2 * sigma_freqs, cfg.num_scalars), nn.SiLU(),
            nn.Linear(cfg.num_scalars, cfg.num_scalars))
        self.edges = EdgeFeatures(cfg.lmax_sh, cfg.num_basis, cfg.cutoff)
        self.layers, irreps_hidden = build_stack(cfg, cfg.num_scalars)
        self.coord_head = o3.Linear(irreps_hidden, o3.Irreps("1x1o"))
        self.type_head = nn.Sequential(nn.Linear(cfg.num_scalars, cfg.num_scalars), nn.SiLU(),
                                       nn.Linear(cfg.num_scalars, MAX_ATOMIC_NUM))
        self.num_scalars = cfg.num_scalars

    def forward(self, pos, atom_types, z, sigma, lattice, batch):
        graph = periodic_radius_graph(pos, lattice, batch, self.cfg.cutoff, self.cfg.max_neighbors)
        cond = torch.cat([z, self.sigma_embedding(sigma)], dim=-1)[batch]
        h = self.input_mlp(torch.cat([self.atom_embedding(atom_types), cond], dim=-1))
        h = run_stack(self.layers, self.edges, h, graph)
        # e3nn >= 0.5 orders the 1o components as Cartesian (x, y, z): D_from_matrix(R) == R
        return self.coord_head(h), self.type_head(h[:, : self.num_scalars])

