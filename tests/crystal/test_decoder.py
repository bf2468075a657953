"""The decoder's coordinate output rotates with the input; types and vectors ignore translations, permutations
(up to relabelling), cell choice and supercells (float64)."""
import torch

from genlowdim.crystal.cdvae.config import GraphNetConfig
from genlowdim.crystal.cdvae.decoder import CrystalDecoder
from genlowdim.crystal.geometry.lattice import frac_to_cart
from genlowdim.testing import check_vector_equivariance, random_crystals

SMALL = GraphNetConfig(num_layers=2, num_scalars=16, num_vectors=8, cutoff=5.0, max_neighbors=None,
                       num_basis=6, radial_hidden=16)


def _decoder_fn(which: int):
    torch.manual_seed(0)
    dec = CrystalDecoder(SMALL, latent_dim=4).double()
    z = torch.randn(2, 4, dtype=torch.float64)
    sigma = torch.tensor([0.3, 1.7], dtype=torch.float64)

    def fn(b):
        pos = frac_to_cart(b.frac_coords, b.lattice, b.batch)
        return dec(pos, b.atom_types, z, sigma, b.lattice, b.batch)[which]
    return fn


def test_coordinate_output_is_equivariant():
    gen = torch.Generator().manual_seed(5)
    batch = random_crystals([3, 4], generator=gen)
    fn = _decoder_fn(0)
    assert fn(batch).abs().max() > 1e-4
    dev = check_vector_equivariance(fn, batch, generator=gen)
    assert max(dev.values()) < 1e-9, dev


def test_type_logits_are_invariant_per_atom():
    gen = torch.Generator().manual_seed(6)
    batch = random_crystals([3, 4], generator=gen)
    fn = _decoder_fn(1)
    # per-atom scalars follow atoms exactly like vectors do, except rotation leaves them unchanged
    from genlowdim.testing import permute, rotate, supercell
    from e3nn import o3

    ref = fn(batch)
    assert (fn(rotate(batch, o3.rand_matrix(dtype=torch.float64))) - ref).abs().max() < 1e-9
    permuted, perm = permute(batch, gen)
    assert (fn(permuted) - ref[perm]).abs().max() < 1e-9
    bigger, source = supercell(batch)
    assert (fn(bigger) - ref[source]).abs().max() < 1e-9


def test_output_depends_on_sigma_and_latent():
    gen = torch.Generator().manual_seed(7)
    b = random_crystals([3], generator=gen)
    torch.manual_seed(0)
    dec = CrystalDecoder(SMALL, latent_dim=4).double()
    pos = frac_to_cart(b.frac_coords, b.lattice, b.batch)
    z = torch.randn(1, 4, dtype=torch.float64)
    s = torch.tensor([0.5], dtype=torch.float64)
    base = dec(pos, b.atom_types, z, s, b.lattice, b.batch)[0]
    assert (dec(pos, b.atom_types, z, 2 * s, b.lattice, b.batch)[0] - base).abs().max() > 1e-6
    assert (dec(pos, b.atom_types, z + 1, s, b.lattice, b.batch)[0] - base).abs().max() > 1e-6
