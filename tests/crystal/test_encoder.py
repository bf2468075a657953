"""The e3nn encoder is invariant to rotation, translation, permutation, cell choice and supercell (float64)."""
import torch

from genlowdim.crystal.geometry.settings import GraphNetConfig
from genlowdim.crystal.geometry.encoder import CrystalEncoder
from genlowdim.crystal.geometry.layers import RadialEmbedding, polynomial_cutoff
from genlowdim.testing import check_invariance, random_crystals

SMALL = GraphNetConfig(num_layers=2, num_scalars=16, num_vectors=8, cutoff=5.0, max_neighbors=None,
                       num_basis=6, radial_hidden=16)


def _encoder(cfg=SMALL):
    torch.manual_seed(0)
    return CrystalEncoder(cfg, latent_dim=8).double()


def test_encoder_is_invariant_to_every_symmetry():
    gen = torch.Generator().manual_seed(1)
    batch = random_crystals([3, 5], generator=gen)
    enc = _encoder()
    mu = enc(batch)[0]
    assert mu.abs().max() > 1e-3  # a non-trivial output, so the deviations below mean something
    dev = check_invariance(lambda b: torch.cat(enc(b), -1), batch, generator=gen)
    assert max(dev.values()) < 1e-9, dev


def test_encoder_with_l2_features_is_invariant():
    from dataclasses import replace

    gen = torch.Generator().manual_seed(2)
    batch = random_crystals([4], generator=gen)
    enc = _encoder(replace(SMALL, num_l2=4, lmax_sh=2))
    dev = check_invariance(lambda b: enc(b)[0], batch, generator=gen)
    assert max(dev.values()) < 1e-9, dev


def test_wide_readout_is_invariant_and_sets_the_pooled_width():
    from dataclasses import replace

    from genlowdim.crystal.cdvae.config import ModelConfig
    from genlowdim.crystal.cdvae.property import PropertyPredictor

    gen = torch.Generator().manual_seed(4)
    batch = random_crystals([3, 5], generator=gen)
    enc = _encoder(replace(SMALL, readout_dim=40))
    assert enc.pooled_dim == 40 and enc.embed(batch).shape == (2, 40)
    dev = check_invariance(lambda b: torch.cat(enc(b), -1), batch, generator=gen)
    assert max(dev.values()) < 1e-9, dev
    # the property predictor's head follows the encoder's pooled width
    model = PropertyPredictor(ModelConfig(head_hidden=8, encoder=replace(SMALL, readout_dim=40))).double()
    assert model.predict(batch).shape == (2,)


def test_encoder_detects_a_changed_structure():
    gen = torch.Generator().manual_seed(3)
    batch = random_crystals([4], generator=gen)
    enc = _encoder()
    moved = batch.clone()
    moved.frac_coords = torch.remainder(batch.frac_coords + 0.05 * torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0]], 1)
    assert (enc(moved)[0] - enc(batch)[0]).abs().max() > 1e-6


def test_cutoff_envelope_is_smooth_and_zero_beyond_cutoff():
    r = torch.tensor([0.0, 2.5, 4.999999, 5.0, 7.0], dtype=torch.float64, requires_grad=True)
    u = polynomial_cutoff(r, 5.0)
    assert float(u[0].detach()) == 1.0 and float(u[3].detach()) == 0.0 and float(u[4].detach()) == 0.0
    assert abs(float(u[2].detach())) < 1e-12
    (grad,) = torch.autograd.grad(u.sum(), r)
    assert abs(float(grad[2])) < 1e-9 and float(grad[1]) < 0
    emb = RadialEmbedding(6, 5.0).double()(r.detach())
    assert emb.shape == (5, 6) and emb[3:].abs().max() == 0
