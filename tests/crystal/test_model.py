"""CDVAE losses against known values: the coordinate score target, the DSM loss, CE of uniform logits,
the KL to the prior, the type noise, the heads' scaling."""
import math

import pytest
import torch

from genlowdim.crystal.cdvae.config import GraphNetConfig, ModelConfig
from genlowdim.crystal.geometry.lattice import cart_to_frac, frac_to_cart, lattice_from_params
from genlowdim.crystal.cdvae.model import CDVAE, coord_loss, coord_score_target, scaled_lattice_target
from genlowdim.testing import random_crystals

TINY = GraphNetConfig(num_layers=1, num_scalars=8, num_vectors=4, cutoff=5.0, max_neighbors=8,
                      num_basis=4, radial_hidden=8)


def _cubic(a=4.0, n=1):
    lengths = torch.full((n, 3), a, dtype=torch.float64)
    return lattice_from_params(lengths, torch.full((n, 3), 90.0, dtype=torch.float64))


def test_score_target_wraps_across_the_cell_face():
    lattice, batch = _cubic(), torch.zeros(2, dtype=torch.long)
    true = torch.tensor([[0.99, 0.5, 0.5], [0.5, 0.02, 0.5]], dtype=torch.float64)
    noisy = torch.tensor([[0.01, 0.5, 0.5], [0.5, 0.97, 0.5]], dtype=torch.float64)
    sigma = torch.tensor([0.2, 0.2], dtype=torch.float64)
    target = coord_score_target(noisy, true, lattice, batch, sigma)
    # noisy − true by the nearest image: +0.02 cells = +0.08 Å along x; −0.05 cells = −0.2 Å along y
    expected = -torch.tensor([[0.08, 0.0, 0.0], [0.0, -0.2, 0.0]], dtype=torch.float64) / 0.04
    assert torch.allclose(target, expected, atol=1e-10)


def test_score_target_equals_minus_noise_over_sigma_in_a_skewed_cell():
    gen = torch.Generator().manual_seed(0)
    b = random_crystals([4, 3], generator=gen)
    sigma = torch.tensor([0.05, 0.3], dtype=torch.float64)[b.batch]
    eps = torch.randn((7, 3), generator=gen, dtype=torch.float64)
    cart = frac_to_cart(b.frac_coords, b.lattice, b.batch) + sigma[:, None] * eps
    noisy = torch.remainder(cart_to_frac(cart, b.lattice, b.batch), 1.0)
    target = coord_score_target(noisy, b.frac_coords, b.lattice, b.batch, sigma)
    # |σε| is far below half a cell, so the nearest image is the drawn noise itself: score = −ε/σ
    assert torch.allclose(target, -eps / sigma[:, None], atol=1e-9)
    # a perfect prediction (decoder output = σ·score) has zero loss
    assert float(coord_loss(target * sigma[:, None], target, sigma, b.batch)) < 1e-20
    # and the loss of a zero output is ½‖ε‖² per atom, averaged per crystal then batch
    per_atom = 0.5 * (eps ** 2).sum(-1)
    expected = 0.5 * (per_atom[:4].mean() + per_atom[4:].mean())
    assert math.isclose(float(coord_loss(torch.zeros_like(target), target, sigma, b.batch)), float(expected),
                        rel_tol=1e-9)


def test_lattice_head_round_trip_and_total_loss_is_finite():
    torch.manual_seed(0)
    model = CDVAE(ModelConfig(latent_dim=8, head_hidden=16, encoder=TINY, decoder=TINY, predict_property=True),
                  max_atoms=6).double()
    b = random_crystals([4, 3, 5], generator=torch.Generator().manual_seed(1))
    target = scaled_lattice_target(b.lengths, b.angles, b.num_atoms)
    model.lattice_scaler.fit(target)
    lengths, angles = model.unscale_lattice(model.lattice_scaler(target), b.num_atoms)
    assert torch.allclose(lengths, b.lengths) and torch.allclose(angles, b.angles)
    loss, parts = model(b, torch.Generator().manual_seed(2))
    assert torch.isfinite(loss)
    assert set(parts) == {"natom", "lattice", "composition", "coord", "type", "kld", "property"}
    c = model.cfg
    weighted = (parts["natom"] + 10 * parts["lattice"] + parts["composition"] + 10 * parts["coord"]
                + parts["type"] + 0.01 * parts["kld"] + parts["property"])
    assert c.cost_lattice == 10 and c.cost_coord == 10 and c.cost_kld == 0.01
    assert torch.allclose(loss, weighted)


def test_noise_levels_follow_cdvae():
    model = CDVAE(ModelConfig(latent_dim=8, head_hidden=16, encoder=TINY, decoder=TINY), max_atoms=5)
    assert len(model.sigmas) == 50 and math.isclose(float(model.sigmas[0]), 10.0, rel_tol=1e-6)
    assert math.isclose(float(model.sigmas[-1]), 0.01, rel_tol=1e-5)
    assert math.isclose(float(model.type_sigmas[0]), 5.0, rel_tol=1e-6)
    ratios = model.sigmas[1:] / model.sigmas[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4)


def _atoms(types, crystal_of_atom):
    """The two batch fields the loss parts read: atom_types (N,) atomic numbers, batch (N,)."""
    from types import SimpleNamespace

    return SimpleNamespace(atom_types=torch.tensor(types), batch=torch.tensor(crystal_of_atom))


def test_cross_entropies_of_zero_logits_are_ln_100():
    from genlowdim.crystal.cdvae.model import composition_loss, type_loss

    atoms = _atoms([8, 8, 22, 38, 1, 100], [0, 0, 0, 0, 1, 1])
    # uniform over the 100 elements: −ln(1/100) whatever the true type
    comp = composition_loss(torch.zeros(2, 100, dtype=torch.float64), atoms)
    assert math.isclose(float(comp), math.log(100), rel_tol=1e-12)
    sigma = torch.tensor([1.0, 1.0, 1.0, 1.0, 4.0, 4.0], dtype=torch.float64)
    t = type_loss(torch.zeros(6, 100, dtype=torch.float64), atoms.atom_types, sigma, atoms.batch)
    # CE/σ per atom, mean per crystal (ln 100 and ln 100 / 4), then over the two crystals
    assert math.isclose(float(t), 0.5 * (math.log(100) + math.log(100) / 4), rel_tol=1e-12)
    # a confident right answer costs ~0: logit 50 on the true type leaves 99·e^-50
    sure = torch.zeros(2, 100, dtype=torch.float64)
    sure[0, 7], sure[1, 0] = 50.0, 50.0
    one_type = _atoms([8, 8, 1], [0, 0, 1])
    assert float(composition_loss(sure, one_type)) == pytest.approx(99 * math.exp(-50), rel=1e-6)


def test_kl_to_the_prior_matches_the_closed_form():
    from genlowdim.crystal.cdvae.model import kl_to_prior

    zero = torch.zeros(3, 4, dtype=torch.float64)
    assert float(kl_to_prior(zero, zero)) == 0.0
    # KL(N(μ, σ²) ‖ N(0, 1)) = ½(σ² + μ² − 1 − ln σ²) per dimension: μ = (1, −2), σ² = (4, 1)
    # gives ½(4 + 1 − 1 − ln 4) + ½(1 + 4 − 1) = 4 − ln 2; the batch mean with a zero row halves it
    mu = torch.tensor([[1.0, -2.0], [0.0, 0.0]], dtype=torch.float64)
    log_var = torch.tensor([[math.log(4.0), 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert math.isclose(float(kl_to_prior(mu, log_var)), (4 - math.log(2)) / 2, rel_tol=1e-12)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert math.isclose(float(kl_to_prior(mu, log_var)),
                        float(torch.distributions.kl_divergence(q, p).sum(1).mean()), rel_tol=1e-12)


def test_type_noise_is_the_one_hot_at_small_sigma_and_an_even_mix_at_sigma_one():
    # CDVAE's noisy types: draw from one-hot(true) + σ·softmax(composition); the method reads no weights
    atoms = _atoms([8] * 4000, [0] * 4000)
    oxygen_to_iron = torch.full((1, 100), -1e4, dtype=torch.float64)
    oxygen_to_iron[0, 25] = 0.0                              # the composition head is sure of Fe (26)
    gen = torch.Generator().manual_seed(0)
    tiny = torch.full((4000,), 1e-12, dtype=torch.float64)
    assert torch.equal(CDVAE.noisy_types(None, atoms, oxygen_to_iron, tiny, gen), atoms.atom_types)
    # σ = 1: mass 1 on O and 1 on Fe, so half the atoms become Fe (binomial: ±4 standard deviations)
    drawn = CDVAE.noisy_types(None, atoms, oxygen_to_iron, torch.ones(4000, dtype=torch.float64), gen)
    assert set(drawn.tolist()) == {8, 26}
    assert abs(float((drawn == 26).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / 4000)
