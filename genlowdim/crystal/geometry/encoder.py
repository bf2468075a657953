"""E(3)-invariant periodic crystal encoder (e3nn) -> CDVAE's latent Gaussian q(z | crystal).

Atoms are embedded by atomic number, then ``num_layers`` :class:`~genlowdim.crystal.geometry.layers.InteractionBlock`
layers pass equivariant messages (scalars + l=1 vectors, optionally l=2) along the periodic radius graph
built once per batch (minimum of ``max_neighbors`` and the ``cutoff``). The scalar channels of the last
layer are mean-pooled per crystal, so the output is invariant to rotation, translation, atom permutation,
the periodic image of each atom and the choice of (super)cell; ``fc_mu``/``fc_var`` give μ and log σ² of z
(CDVAE eq. 2's encoder).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from e3nn import o3
from torch_geometric.data import Batch
from torch import nn
from torch_geometric.utils import scatter

from genlowdim.crystal.geometry.settings import GraphNetConfig
from genlowdim.crystal.geometry.graph import PeriodicGraph, periodic_radius_graph
from genlowdim.crystal.geometry.lattice import frac_to_cart
from genlowdim.crystal.geometry.layers import EdgeFeatures, InteractionBlock, hidden_irreps, uniform_degree

MAX_ATOMIC_NUM = 100


class _CachedGraph(NamedTuple):
    edge_index: torch.Tensor


def build_stack(cfg: GraphNetConfig, in_scalars: int) -> tuple[nn.ModuleList, o3.Irreps]:
    """``cfg.num_layers`` interaction blocks from ``in_scalars``x0e to the hidden irreps of ``cfg``."""
    irreps_hidden = hidden_irreps(cfg.num_scalars, cfg.num_vectors, cfg.num_l2)
    irreps_sh = o3.Irreps.spherical_harmonics(cfg.lmax_sh)
    layers, irreps_in = nn.ModuleList(), o3.Irreps(f"{in_scalars}x0e")
    for _ in range(cfg.num_layers):
        layers.append(InteractionBlock(irreps_in, irreps_hidden, irreps_sh, cfg.num_basis,
                                       cfg.radial_hidden, cfg.avg_num_neighbors))
        irreps_in = irreps_hidden
    return layers, irreps_hidden


def run_stack(layers: nn.ModuleList, edges: EdgeFeatures | tuple, h: torch.Tensor, graph,
              scalars_only: bool = False) -> torch.Tensor:
    """Apply the layers on a ``PeriodicGraph``; ``h``: (N, in) -> (N, irreps_hidden.dim), or with
    ``scalars_only`` the last layer's scalar channels alone (N, num_scalars), computed without the work
    that feeds only its vectors. ``edges``: the module giving (sh, radial) of the edge vectors, or that
    pair already computed (with ``graph`` then anything with an ``edge_index``)."""
    sh, radial = edges(graph.edge_vec) if isinstance(edges, nn.Module) else edges
    degree = uniform_degree(graph.edge_index[1], h.shape[0])
    for i, layer in enumerate(layers):
        h = layer(h, sh, radial, graph.edge_index, scalars_only=scalars_only and i == len(layers) - 1,
                  degree=degree)
    return h


class CrystalEncoder(nn.Module):
    """``forward(batch) -> (mu: (B, latent), log_var: (B, latent))`` for a PyG batch of crystals.

    The batch needs ``frac_coords (N,3)``, ``atom_types (N,)`` atomic numbers 1..100, ``lattice (B,3,3)``
    (rows = lattice vectors, Å) and ``batch (N,)``. ``embed(batch) -> (B, pooled_dim)`` is the pooled
    invariant representation before the latent heads (the property predictor reuses it); ``pooled_dim`` is
    ``readout_dim`` (default ``num_scalars``). A wide readout matters: the mean of a few narrow per-atom
    vectors is a poor code for *which* elements a crystal holds, and the latent must carry its composition.
    """

    def __init__(self, cfg: GraphNetConfig, latent_dim: int):
        super().__init__()
        self.cfg = cfg
        self.atom_embedding = nn.Embedding(MAX_ATOMIC_NUM + 1, cfg.num_scalars)
        self.edges = EdgeFeatures(cfg.lmax_sh, cfg.num_basis, cfg.cutoff)
        self.layers, self.irreps_hidden = build_stack(cfg, cfg.num_scalars)
        self.num_scalars = cfg.num_scalars
        self.pooled_dim = int(cfg.readout_dim or cfg.num_scalars)
        self.readout = nn.Sequential(nn.Linear(cfg.num_scalars, self.pooled_dim), nn.SiLU(),
                                     nn.Linear(self.pooled_dim, self.pooled_dim))
        self.fc_mu = nn.Linear(self.pooled_dim, latent_dim)
        self.fc_var = nn.Linear(self.pooled_dim, latent_dim)

    def embed(self, batch) -> torch.Tensor:
        lattice = batch.lattice.view(-1, 3, 3)
        if "enc_edge_index" in batch:   # edges precomputed by attach_encoder_edges (fixed training cells)
            graph, edges = _CachedGraph(batch.enc_edge_index), (batch.enc_sh, batch.enc_radial)
        else:
            graph, edges = self.graph(batch), self.edges
        # only the last layer's scalars are pooled, so its vector outputs are not computed
        h = run_stack(self.layers, edges, self.atom_embedding(batch.atom_types), graph, scalars_only=True)
        per_atom = self.readout(h[:, : self.num_scalars])
        return scatter(per_atom, batch.batch, dim=0, dim_size=lattice.shape[0], reduce="mean")

    def graph(self, batch) -> PeriodicGraph:
        """The periodic radius graph this encoder reads for ``batch``."""
        lattice = batch.lattice.view(-1, 3, 3)
        pos = frac_to_cart(batch.frac_coords, lattice, batch.batch)
        return periodic_radius_graph(pos, lattice, batch.batch, self.cfg.cutoff, self.cfg.max_neighbors)

    @torch.no_grad()
    def attach_edges(self, items: list, chunk: int = 1024) -> list:
        """Store on each item (PyG ``Data``) the encoder's edges: ``enc_edge_index`` (2, e) local indices,
        ``enc_sh`` and ``enc_radial``, which :meth:`embed` then reads instead of rebuilding them.

        Only for crystals that stay fixed between visits (training and validation cells, whose positions
        take no gradient): the cache is not invalidated if an item's coordinates change afterwards."""
        for start in range(0, len(items), chunk):
            batch = Batch.from_data_list(items[start:start + chunk])
            graph = self.graph(batch)
            sh, radial = self.edges(graph.edge_vec)
            first_node = batch.ptr[:-1]
            owner = batch.batch[graph.edge_index[1]]
            per_item = torch.bincount(owner, minlength=batch.num_graphs).tolist()
            local = graph.edge_index - first_node[owner]
            for item, idx, s, r in zip(items[start:start + chunk], local.split(per_item, dim=1),
                                       sh.split(per_item), radial.split(per_item)):
                item.enc_edge_index, item.enc_sh, item.enc_radial = idx.clone(), s.clone(), r.clone()
        return items

    def forward(self, batch):
        pooled = self.embed(batch)
        return self.fc_mu(pooled), self.fc_var(pooled)
