"""The fused message kernel computes what e3nn's TensorProduct + scatter-sum computes (values and gradients,
float64), on uniform-degree graphs (the dense path) and on irregular ones (the scatter path)."""
import pytest
import torch
from e3nn import o3
from torch_geometric.utils import scatter

from genlowdim.crystal.geometry import layers as L


def _block(irreps_in, irreps_out):
    """Built in float64, so e3nn's own constants are float64 too."""
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return L.InteractionBlock(irreps_in, irreps_out, o3.Irreps.spherical_harmonics(1), 8)
    finally:
        torch.set_default_dtype(default)


def _graph(num_nodes, degree, irregular):
    gen = torch.Generator().manual_seed(1)
    if irregular:
        dst = torch.randint(0, num_nodes, (num_nodes * degree,), generator=gen)
    else:
        dst = torch.arange(num_nodes).repeat_interleave(degree)
    src = torch.randint(0, num_nodes, dst.shape, generator=gen)
    vec = torch.randn(dst.shape[0], 3, generator=gen, dtype=torch.float64) * 2
    return torch.stack([src, dst]), vec


@pytest.mark.parametrize("irreps_in,irreps_out", [("32x0e", "32x0e+8x1o"), ("32x0e+8x1o", "32x0e+8x1o"),
                                                  ("64x0e+16x1o", "64x0e+16x1o")])
@pytest.mark.parametrize("irregular", [False, True])
def test_messages_equal_e3nn_tensor_product(irreps_in, irreps_out, irregular):
    block = _block(irreps_in, irreps_out)
    edge_index, vec = _graph(30, 12, irregular)
    sh, radial = L.EdgeFeatures(1, 8, 6.0).double()(vec)
    x = torch.randn(30, o3.Irreps(irreps_in).dim, dtype=torch.float64)
    weight = block.radial_mlp(radial)
    expected = scatter(block.tp(x[edge_index[0]], sh, weight), edge_index[1], dim=0, dim_size=30, reduce="sum")
    degree = L.uniform_degree(edge_index[1], 30)
    assert (degree is None) == irregular
    got = block.fused(x, sh, weight, edge_index[0], edge_index[1], degree=degree)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scalars_only", [False, True])
def test_block_values_and_gradients_equal_e3nn_path(scalars_only):
    block = _block("32x0e+8x1o", "32x0e+8x1o")
    edge_index, vec = _graph(40, 12, False)
    vec.requires_grad_(True)
    h = torch.randn(40, block.irreps_in.dim, dtype=torch.float64)

    def run(fused):
        L.use_fused_kernels(fused)
        try:
            sh, radial = L.EdgeFeatures(1, 8, 6.0).double()(vec)
            out = block(h, sh, radial, edge_index, scalars_only=scalars_only,
                        degree=L.uniform_degree(edge_index[1], 40))
            grads = torch.autograd.grad(out.pow(2).sum(), [vec, *block.parameters()], allow_unused=True)
            return out, grads
        finally:
            L.use_fused_kernels(True)

    (out_f, grads_f), (out_e, grads_e) = run(True), run(False)
    width = 32 if scalars_only else block.irreps_out.dim
    assert out_f.shape == (40, width)
    torch.testing.assert_close(out_f, out_e, rtol=1e-10, atol=1e-10)
    for gf, ge in zip(grads_f, grads_e):
        if ge is None or not ge.abs().max() > 0:   # parameters feeding only unused vector outputs
            assert gf is None or not scalars_only or gf.abs().max() < 1e-12
            continue
        torch.testing.assert_close(gf, ge, rtol=1e-9, atol=1e-10)


def test_radial_weights_equal_the_mlp_and_its_columns():
    block = _block("32x0e+8x1o", "32x0e+8x1o")
    radial = torch.rand(50, 8, dtype=torch.float64)
    full = block.radial_mlp(radial)
    torch.testing.assert_close(L.radial_weights(block.radial_mlp, radial), full, rtol=1e-12, atol=1e-12)
    cols = block.fused.scalar_columns
    torch.testing.assert_close(L.radial_weights(block.radial_mlp, radial, cols), full[:, cols])
    assert cols.numel() == 32 + 8   # the 0e⊗0e and 1o⊗1o→0e paths


def test_uniform_degree_needs_sorted_equal_counts():
    assert L.uniform_degree(torch.tensor([0, 0, 1, 1]), 2) == 2
    assert L.uniform_degree(torch.tensor([0, 1, 0, 1]), 2) is None   # unsorted
    assert L.uniform_degree(torch.tensor([0, 0, 0, 1]), 2) is None   # unequal
    assert L.uniform_degree(torch.tensor([0, 0]), 2) is None          # a centre without edges


def test_encoder_reads_attached_edges_as_if_it_built_them():
    from torch_geometric.data import Batch

    from genlowdim.crystal.geometry.settings import GraphNetConfig
    from genlowdim.crystal.data import load_dataset
    from genlowdim.crystal.geometry.encoder import CrystalEncoder

    items = [load_dataset("perov_5", "val", max_atoms=5)[i] for i in range(40)]
    torch.manual_seed(0)
    encoder = CrystalEncoder(GraphNetConfig(num_layers=2, num_scalars=16, num_vectors=4, max_neighbors=12), 8)
    batch = Batch.from_data_list(items[7:30])
    expected = encoder(batch)
    encoder.attach_edges(items, chunk=16)   # chunks that do not align with the batch
    cached = Batch.from_data_list(items[7:30])
    assert "enc_edge_index" in cached
    torch.testing.assert_close(encoder(cached), expected, rtol=1e-6, atol=1e-6)


def test_compiled_blocks_give_the_same_values_and_gradients():
    """compile_blocks (train.compile_kernels) compiles each block in place: same outputs and gradients (with
    respect to the edge vectors and every parameter) as eager, to float64 rounding, and the same state dict."""
    block = _block("16x0e+4x1o", "16x0e+4x1o")
    model = torch.nn.ModuleList([block])
    keys = list(model.state_dict())
    edge_index, vec = _graph(20, 12, False)
    vec.requires_grad_(True)
    h = torch.randn(20, block.irreps_in.dim, dtype=torch.float64)

    def run():
        sh, radial = L.EdgeFeatures(1, 8, 6.0).double()(vec)
        out = model[0](h, sh, radial, edge_index, degree=L.uniform_degree(edge_index[1], 20))
        return out, torch.autograd.grad(out.pow(2).sum(), [vec, *block.parameters()])

    out_e, grads_e = run()
    assert L.compile_blocks(model) == 1
    out_c, grads_c = run()
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(out_c, out_e, rtol=1e-10, atol=1e-10)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, rtol=1e-9, atol=1e-10)
