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
from typing import NamedTuple

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


# (l_in, l_sh, l_out) of the channel-wise paths :class:`ChannelwiseMessages` computes without e3nn's kernel
_FUSED_PATHS = {(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)}


class _Path(NamedTuple):
    """One channel-wise path of a :class:`ChannelwiseMessages`: (l_in, l_sh, l_out), its multiplicity, the
    input and sh blocks it reads, its weight chunk (in e3nn's order; among the scalar paths), its constant
    and its columns in the output."""

    ls: tuple
    mul: int
    block_in: int
    block_sh: int
    chunk: int
    scalar_chunk: int
    const: float
    width: int


class ChannelwiseMessages(nn.Module):
    """Σ_j TP_uvu(x_j, Y(ê_ij); w_ij) summed at each centre i, for the paths of :data:`_FUSED_PATHS` (l ≤ 1).

    The same numbers as e3nn's ``TensorProduct`` (its path weights and Clebsch-Gordan constants are read from
    it) followed by a scatter-sum, but each input block is gathered once, each path is summed over the edges
    on its own (constants applied per atom) and the paths are concatenated per atom, so the (E, irreps_mid)
    message table, its copies and the zero-filled gradients of column slices are never built.
    ``forward(x: (N, in), sh: (E, sh), weight: (E, weight_numel), src, dst) -> (N, irreps_mid.dim)``.
    """

    def __init__(self, tp: o3.TensorProduct):
        super().__init__()
        in1, in2, out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        self.in_dims, self.sh_dims = [ir.dim for ir in in1], [ir.dim for ir in in2]
        self.weight_sizes = [in1[ins.i_in1].mul for ins in tp.instructions]
        paths = []
        for k, ins in enumerate(tp.instructions):
            (mul, ir1), ir2, ir3 = in1[ins.i_in1], in2[ins.i_in2].ir, out[ins.i_out].ir
            # e3nn's kernel: path weight × Wigner 3j (the irrep normalisation is inside the path weight); for
            # these paths the 3j symbol is a constant times δ, so one number per path
            const = float(o3.wigner_3j(ir1.l, ir2.l, ir3.l).reshape(-1)[0]) * ins.path_weight
            paths.append((ins.i_out, (ir1.l, ir2.l, ir3.l), mul, ins.i_in1, ins.i_in2, k, const, mul * ir3.dim))
        paths.sort(key=lambda p: p[0])
        scalar_rank = {p[5]: r for r, p in enumerate(q for q in paths if q[1][2] == 0)}
        self.paths = [_Path(ls, mul, b1, b2, k, scalar_rank.get(k, -1), const, width)
                      for _, ls, mul, b1, b2, k, const, width in paths]
        self.scalar_sizes = [p.mul for p in self.paths if p.ls[2] == 0]
        # the radial-weight columns of the paths into scalars, for callers that read only the scalar outputs
        starts = [sum(self.weight_sizes[:k]) for k in range(len(self.weight_sizes))]
        cols = [torch.arange(starts[p.chunk], starts[p.chunk] + p.mul) for p in self.paths if p.ls[2] == 0]
        self.register_buffer("scalar_columns", torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long),
                             persistent=False)

    @staticmethod
    def supports(tp: o3.TensorProduct) -> bool:
        """True if every path is channel-wise ('uvu', one sh copy) with (l_in, l_sh, l_out) in _FUSED_PATHS."""
        for ins in tp.instructions:
            ls = (tp.irreps_in1[ins.i_in1][1].l, tp.irreps_in2[ins.i_in2][1].l, tp.irreps_out[ins.i_out][1].l)
            if ins.connection_mode != "uvu" or tp.irreps_in2[ins.i_in2][0] != 1 or ls not in _FUSED_PATHS:
                return False
        return len({ins.i_out for ins in tp.instructions}) == len(tp.instructions)

    def forward(self, x, sh, weight, src, dst, scalars_only: bool = False, degree: int | None = None):
        """With ``scalars_only`` the paths into vectors are skipped (their columns of the result are zero) and
        ``weight`` holds only the columns :attr:`scalar_columns` of the full radial weights. ``degree = K``
        says every centre has exactly K edges and the edges are sorted by centre (see :func:`uniform_degree`):
        the sums over neighbours are then reductions of (N, K, ·) views, and the scalar ⊗ direction path a
        batched (mul × K)·(K × 3) product, instead of scatters of per-edge outer products."""
        num_nodes = x.shape[0]
        blocks = [b.index_select(0, src) for b in x.split(self.in_dims, dim=1)]
        ys = sh.split(self.sh_dims, dim=1)
        chunks = weight.split(self.scalar_sizes if scalars_only else self.weight_sizes, dim=1)
        parts = []
        for p in self.paths:
            if scalars_only and p.ls[2] != 0:
                parts.append(x.new_zeros(num_nodes, p.width))
                continue
            w = chunks[p.scalar_chunk if scalars_only else p.chunk]
            x1, y = blocks[p.block_in], ys[p.block_sh]
            if degree is not None:
                summed = _path_sum_dense(p.ls, p.mul, x1, y, w, num_nodes, degree)
            else:
                msg = _path_messages(p.ls, p.mul, x1, y, w, src.shape[0])
                summed = msg.new_zeros(num_nodes, p.width).index_add_(0, dst, msg)
            parts.append(summed * p.const)
        return torch.cat(parts, dim=-1)


def uniform_degree(dst: torch.Tensor, num_nodes: int) -> int | None:
    """K if every one of ``num_nodes`` centres has exactly K > 0 edges and ``dst`` is sorted, else None."""
    if dst.numel() == 0 or dst.numel() % num_nodes or bool((dst[1:] < dst[:-1]).any()):
        return None
    counts = torch.bincount(dst, minlength=num_nodes)
    return int(counts[0]) if bool((counts == counts[0]).all()) else None


def _path_messages(ls, mul: int, x1, y, w, num_edges: int):
    """One channel-wise path per edge: x1 (E, mul·d_in) ⊗ y (E, d_sh) weighted by w (E, mul) -> (E, mul·d_out)."""
    if ls == (0, 0, 0):
        return w * x1 * y
    if ls == (0, 1, 1):
        return ((w * x1).unsqueeze(-1) * y.unsqueeze(1)).reshape(num_edges, mul * 3)
    if ls == (1, 0, 1):
        return ((w * y).unsqueeze(-1) * x1.view(num_edges, mul, 3)).reshape(num_edges, mul * 3)
    # (1, 1, 0): the dot product of each vector channel with the edge direction
    return w * (x1.view(num_edges, mul, 3) * y.unsqueeze(1)).sum(-1)


def _path_sum_dense(ls, mul: int, x1, y, w, num_nodes: int, k: int):
    """:func:`_path_messages` summed over each centre's K consecutive edges -> (N, mul·d_out)."""
    if ls == (0, 1, 1):   # Σ_n (w x)[n, u] y[n, :] per centre: a (mul × K)(K × 3) product, u-major output
        a = (w * x1).view(num_nodes, k, mul).transpose(1, 2)
        return torch.bmm(a, y.reshape(num_nodes, k, 3)).reshape(num_nodes, mul * 3)
    if ls == (1, 0, 1):
        wy = (w * y).view(num_nodes, k, mul, 1)
        return (wy * x1.view(num_nodes, k, mul, 3)).sum(1).reshape(num_nodes, mul * 3)
    return _path_messages(ls, mul, x1, y, w, x1.shape[0]).view(num_nodes, k, -1).sum(1)


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
        # the fused kernel computes the same messages as self.tp (which keeps the checkpoint layout)
        self.fused = ChannelwiseMessages(self.tp) if ChannelwiseMessages.supports(self.tp) else None
        self.num_scalars_out = scalars.dim
        self.residual = self.irreps_in == self.irreps_out   # a bool, so compiled code has no Irreps to guard

    def forward(self, h, sh, radial, edge_index, scalars_only: bool = False, degree: int | None = None):
        """With ``scalars_only`` only the scalar outputs (N, scalars.dim) are computed: the paths, radial
        weights and gates that feed only vector outputs are skipped (the encoder's last layer, whose vectors
        nothing reads); the scalars are the same numbers as the full layer's. ``degree``: see
        :meth:`ChannelwiseMessages.forward` (computed once per graph by the caller)."""
        src, dst = edge_index[0], edge_index[1]
        x = self.linear_in(h)
        if self.fused is not None and _MESSAGES["fused"]:
            cols = self.fused.scalar_columns if scalars_only else None   # radial_weights: same as radial_mlp
            agg = self.fused(x, sh, radial_weights(self.radial_mlp, radial, cols), src, dst,
                             scalars_only, degree) * self.norm
        else:
            messages = self.tp(x[src], sh, self.radial_mlp(radial))
            agg = scatter(messages, dst, dim=0, dim_size=h.shape[0], reduce="sum") * self.norm
        out = self.gate(self.linear_out(agg) + self.self_connection(h))
        if self.residual:
            out = out + h
        return out[:, : self.num_scalars_out] if scalars_only else out


def radial_weights(mlp: FullyConnectedNet, radial: torch.Tensor, columns: torch.Tensor | None = None):
    """``mlp(radial)`` (E, weight_numel), or only its output ``columns``.

    e3nn's layers compute act(x @ W / sqrt(h_in·var_in))·sqrt(var_out), the activation itself scaled to unit
    second moment (``normalize2mom``: cst·f); here every such constant is folded into the next layer's
    (h_in, h_out) weight, so no (E, hidden) tensor is multiplied by a number."""
    carry = 1.0
    layers = list(mlp)
    for i, layer in enumerate(layers):
        w = layer.weight
        if i == len(layers) - 1 and columns is not None:
            w = w.index_select(1, columns)
        if layer.act is None:
            return radial @ (w * (carry / (layer.h_in * layer.var_in / layer.var_out) ** 0.5))
        radial = radial @ (w * (carry / (layer.h_in * layer.var_in) ** 0.5))
        act, cst = (layer.act.f, 1.0 if layer.act._is_id else layer.act.cst) if hasattr(layer.act, "cst") \
            else (layer.act, 1.0)
        radial, carry = act(radial), cst * layer.var_out ** 0.5
    return radial * carry


# which message kernel the layers call: the fused one (default) or e3nn's TensorProduct + scatter
_MESSAGES = {"fused": True}


def use_fused_kernels(enabled: bool = True) -> None:
    """Switch between the fused message kernel (default) and e3nn's ``TensorProduct`` + scatter, which
    computes the same numbers more slowly (kept for comparison: ``bench/train_step.py``, tests)."""
    _MESSAGES["fused"] = bool(enabled)


def compile_blocks(model: nn.Module) -> int:
    """Run every :class:`InteractionBlock` of ``model`` through ``torch.compile`` in place (the state dict
    keeps its keys). Whole blocks are compiled (radial MLP, messages, linears, gate, backward), so inductor
    fuses their elementwise work: 1.2-1.4x less time per perov_5 training step on a CPU core, after about a
    minute of compilation per process; same numbers up to float rounding. Shapes are specialised first and
    made dynamic on the first change (variable cell sizes). Returns the number of blocks compiled."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    blocks = [m for m in model.modules() if isinstance(m, InteractionBlock)]
    for block in blocks:
        block.compile()
    return len(blocks)


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
