"""Shared e3nn building blocks of the crystal encoder and decoder.

* :class:`RadialEmbedding` -- Bessel radial basis times NequIP's smooth polynomial cutoff
  (Gasteiger et al. 2020, eq. 7; Batzner et al. 2022, eq. 8), so messages vanish smoothly at the cutoff and a
  neighbour crossing the cutoff sphere does not make the network jump.
* :class:`InteractionBlock` -- one equivariant message-passing layer in the NequIP/MACE style: the sender's
  features are combined with the spherical harmonics of the edge vector by a *channel-wise* ('uvu') tensor
  product whose weights come from an MLP of the radial embedding, summed over neighbours, mixed by a linear
  layer, gated, and added to a linear self-connection.

All tensors are float (any dtype), on any device; no randomness is drawn here.
"""
from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn
from torch_geometric.utils import scatter


def polynomial_cutoff(r: torch.Tensor, cutoff: float, p: int = 6) -> torch.Tensor:
    """Smooth envelope u(r/c) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2) for x < 1, else 0.

    ``r``: (E,) distances in Å. Returns (E,) in [0, 1], with value and first two derivatives 0 at the cutoff.
    """
    x = r / cutoff
    out = (1.0 - 0.5 * (p + 1) * (p + 2) * x.pow(p) + p * (p + 2) * x.pow(p + 1)
           - 0.5 * p * (p + 1) * x.pow(p + 2))
    return out * (x < 1.0).to(r.dtype)


class RadialEmbedding(nn.Module):
    """Bessel basis sqrt(2/c)·sin(nπr/c)/r, n = 1..num_basis, times the polynomial cutoff.

    ``forward(r: (E,) Å) -> (E, num_basis)``.
    """

    def __init__(self, num_basis: int, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)
        self.register_buffer("freqs", torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.clamp_min(1e-6)[:, None]
        basis = math.sqrt(2.0 / self.cutoff) * torch.sin(self.freqs.to(r.dtype) * r / self.cutoff) / r
        return basis * polynomial_cutoff(r, self.cutoff, self.p)


def gated_irreps(irreps_hidden: o3.Irreps) -> tuple[o3.Irreps, o3.Irreps, o3.Irreps]:
    """Split ``irreps_hidden`` into (scalars, gates, gated) for an e3nn ``Gate``: one scalar gate per l>0 copy."""
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
    gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
    return scalars, gates, gated


def _uvu_instructions(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
    """Channel-wise paths in ⊗ sh -> out kept only where ``out``'s irrep type occurs in ``irreps_target``."""
    wanted = {ir for _, ir in irreps_target}
    mids, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in wanted:
                    instructions.append((i, j, len(mids), "uvu", True))
                    mids.append((mul, ir_out))
    irreps_mid = o3.Irreps(mids)
    irreps_sorted, perm, _ = irreps_mid.sort()
    instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]
    return irreps_sorted, instructions


class InteractionBlock(nn.Module):
    """Equivariant message passing: h_i' = Gate(Lin(Σ_j TP_uvu(Lin h_j, Y(ê_ij); R(|r_ij|)))/n̄ + Self(h_i)).

    ``forward(h: (N, irreps_in.dim), sh: (E, irreps_sh.dim), radial: (E, num_basis), edge_index: (2, E))``
    with ``edge_index[0]`` the neighbour j and ``edge_index[1]`` the centre i; returns (N, irreps_out.dim).
    ``avg_num_neighbors`` normalises the sum (a constant, so the layer stays smooth in the positions).
    """

    def __init__(self, irreps_in, irreps_out, irreps_sh, num_basis: int, radial_hidden: int = 64,
                 avg_num_neighbors: float = 12.0):
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        irreps_sh = o3.Irreps(irreps_sh)
        scalars, gates, gated = gated_irreps(self.irreps_out)
        self.gate = Gate(scalars, [torch.nn.functional.silu] * len(scalars),
                         gates, [torch.sigmoid] * len(gates), gated)
        irreps_pre = self.gate.irreps_in
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        irreps_mid, instructions = _uvu_instructions(self.irreps_in, irreps_sh, irreps_pre)
        self.tp = o3.TensorProduct(self.irreps_in, irreps_sh, irreps_mid, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial_mlp = FullyConnectedNet([num_basis, radial_hidden, self.tp.weight_numel],
                                            torch.nn.functional.silu)
        self.linear_out = o3.Linear(irreps_mid, irreps_pre)
        self.self_connection = o3.Linear(self.irreps_in, irreps_pre)
        self.norm = 1.0 / float(avg_num_neighbors)

    def forward(self, h, sh, radial, edge_index):
        src, dst = edge_index[0], edge_index[1]
        x = self.linear_in(h)
        messages = self.tp(x[src], sh, self.radial_mlp(radial))
        agg = scatter(messages, dst, dim=0, dim_size=h.shape[0], reduce="sum") * self.norm
        out = self.gate(self.linear_out(agg) + self.self_connection(h))
        if self.irreps_in == self.irreps_out:
            out = out + h
        return out


class EdgeFeatures(nn.Module):
    """Spherical harmonics (component-normalised) and radial embedding of the edge vectors.

    ``forward(edge_vec: (E, 3) Å) -> (sh: (E, irreps_sh.dim), radial: (E, num_basis))``.
    """

    def __init__(self, lmax: int, num_basis: int, cutoff: float):
        super().__init__()
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.radial = RadialEmbedding(num_basis, cutoff)

    def forward(self, edge_vec: torch.Tensor):
        sh = o3.spherical_harmonics(self.irreps_sh, edge_vec, normalize=True, normalization="component")
        return sh, self.radial(edge_vec.norm(dim=-1))


def hidden_irreps(num_scalars: int, num_vectors: int, num_l2: int = 0) -> o3.Irreps:
    """'Nx0e + Mx1o (+ Kx2e)': the hidden feature irreps of a config (l ≤ 1 unless ``num_l2`` > 0)."""
    parts = [f"{num_scalars}x0e"]
    if num_vectors:
        parts.append(f"{num_vectors}x1o")
    if num_l2:
        parts.append(f"{num_l2}x2e")
    return o3.Irreps("+".join(parts))
