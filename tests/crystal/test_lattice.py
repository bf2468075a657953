"""Lattice maths against pymatgen and against exact answers (float64)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice

from genlowdim.crystal.geometry.lattice import (cart_to_frac, expand_per_graph, frac_to_cart, lattice_from_params,
                                       lattice_heights, lattice_params, lattice_volume,
                                       min_image_cart_displacement, min_image_frac_displacement)


def _random_params(generator, b=32):
    """b random valid cells: lengths 2-10 Å, angles 40-140° (far from 90°), none nearly flat."""
    lengths = 2.0 + 8.0 * torch.rand(4 * b, 3, generator=generator, dtype=torch.float64)
    angles = 40.0 + 100.0 * torch.rand(4 * b, 3, generator=generator, dtype=torch.float64)
    cos = torch.cos(torch.deg2rad(angles))
    volume_factor = 1 - (cos ** 2).sum(-1) + 2 * cos.prod(-1)  # (V / abc)², > 0 for a valid cell
    valid = (volume_factor > 0.05).nonzero().flatten()[:b]
    assert valid.numel() == b
    return lengths[valid], angles[valid]


def test_from_params_matches_pymatgen(generator):
    lengths, angles = _random_params(generator)
    ours = lattice_from_params(lengths, angles)
    for k in range(lengths.shape[0]):
        ref = Lattice.from_parameters(*lengths[k].tolist(), *angles[k].tolist()).matrix
        np.testing.assert_allclose(ours[k].numpy(), ref, atol=1e-10)


def test_params_round_trip_and_pymatgen_on_rotated_cells(generator):
    lengths, angles = _random_params(generator)
    back_l, back_a = lattice_params(lattice_from_params(lengths, angles))
    torch.testing.assert_close(back_l, lengths, atol=1e-10, rtol=0)
    torch.testing.assert_close(back_a, angles, atol=1e-8, rtol=0)
    rotated = torch.randn(5, 3, 3, generator=generator, dtype=torch.float64)
    for k in range(5):
        lens, angs = lattice_params(rotated[k:k + 1])
        ref = Lattice(rotated[k].numpy())
        np.testing.assert_allclose(lens[0].numpy(), ref.abc, atol=1e-10)
        np.testing.assert_allclose(angs[0].numpy(), ref.angles, atol=1e-8)


def test_volume_and_heights(generator):
    lengths, angles = _random_params(generator, b=8)
    lat = lattice_from_params(lengths, angles)
    for k in range(lat.shape[0]):
        ref = Lattice(lat[k].numpy())
        assert abs(float(lattice_volume(lat)[k]) - ref.volume) < 1e-9
        # plane spacing = 1 / |reciprocal vector| (crystallographic reciprocal lattice, no 2π)
        recip = np.array(ref.reciprocal_lattice_crystallographic.abc)
        np.testing.assert_allclose(lattice_heights(lat)[k].numpy(), 1.0 / recip, rtol=1e-10)
    # left-handed lattice: volume stays positive
    mirror = lat.clone()
    mirror[:, :, 0] *= -1
    torch.testing.assert_close(lattice_volume(mirror), lattice_volume(lat))


def test_frac_cart_round_trip_matches_pymatgen(generator):
    lengths, angles = _random_params(generator, b=4)
    lat = lattice_from_params(lengths, angles)
    batch = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    frac = torch.rand(7, 3, generator=generator, dtype=torch.float64) * 3 - 1
    cart = frac_to_cart(frac, lat, batch)
    for n in range(7):
        ref = Lattice(lat[batch[n]].numpy()).get_cartesian_coords(frac[n].numpy())
        np.testing.assert_allclose(cart[n].numpy(), ref, atol=1e-10)
    torch.testing.assert_close(cart_to_frac(cart, lat, batch), frac, atol=1e-12, rtol=0)


def test_min_image_frac_range_and_integer_shift(generator):
    a = torch.rand(1000, 3, generator=generator, dtype=torch.float64) * 6 - 3
    b = torch.rand(1000, 3, generator=generator, dtype=torch.float64) * 6 - 3
    d = min_image_frac_displacement(a, b)
    assert bool((d >= -0.5).all() and (d < 0.5).all())
    shift = (a - b) - d
    torch.testing.assert_close(shift, shift.round(), atol=1e-12, rtol=0)
    exact = torch.tensor([[0.5, -0.5, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(min_image_frac_displacement(exact, torch.zeros(1, 3, dtype=torch.float64)),
                               torch.tensor([[-0.5, -0.5, 0.25]], dtype=torch.float64))


def _brute_force_min_image(a, b, lat, reach=3):
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    cands = ((a - b)[None, :] + shifts) @ lat
    return cands[np.argmin((cands ** 2).sum(1))]


def test_min_image_cart_matches_brute_force_and_beats_frac_on_skewed_cell(generator):
    lat = torch.tensor([[[4.0, 0.0, 0.0], [3.6, 1.0, 0.0], [0.0, 0.0, 5.0]]], dtype=torch.float64)
    a = torch.rand(500, 3, generator=generator, dtype=torch.float64)
    b = torch.rand(500, 3, generator=generator, dtype=torch.float64)
    batch = torch.zeros(500, dtype=torch.long)
    cart = min_image_cart_displacement(a, b, lat, batch)
    for n in range(0, 500, 25):
        ref = _brute_force_min_image(a[n].numpy(), b[n].numpy(), lat[0].numpy())
        assert abs(np.linalg.norm(ref) - float(cart[n].norm())) < 1e-10
    frac_len = frac_to_cart(min_image_frac_displacement(a, b), lat, batch).norm(dim=-1)
    assert bool((cart.norm(dim=-1) <= frac_len + 1e-12).all())
    assert bool((cart.norm(dim=-1) < frac_len - 0.1).any())  # the fractional image is not shortest here
    # the result is a lattice translate of a - b
    frac_shift = cart_to_frac(cart, lat, batch) - (a - b)
    torch.testing.assert_close(frac_shift, frac_shift.round(), atol=1e-10, rtol=0)


def test_expand_per_graph():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    batch = torch.tensor([2, 0, 0, 1])
    torch.testing.assert_close(expand_per_graph(values, batch), values[[2, 0, 0, 1]])
    with pytest.raises(ValueError, match="outside"):
        expand_per_graph(values, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="long"):
        expand_per_graph(values, torch.tensor([0.0, 1.0]))


def test_gradients_are_exact(generator):
    lengths, angles = _random_params(generator, b=3)
    lengths.requires_grad_(True)
    angles.requires_grad_(True)
    assert torch.autograd.gradcheck(lattice_from_params, (lengths, angles))
    lat = lattice_from_params(lengths, angles).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: lattice_params(x), (lat,))
    assert torch.autograd.gradcheck(lattice_volume, (lat,))


def test_float32_and_bad_shapes():
    lat = lattice_from_params(torch.tensor([[3.0, 4.0, 5.0]]), torch.tensor([[90.0, 90.0, 120.0]]))
    assert lat.dtype == torch.float32
    assert abs(float(lattice_volume(lat)[0]) - 3 * 4 * 5 * np.sin(np.radians(120))) < 1e-4
    with pytest.raises(ValueError, match=r"\(B, 3, 3\)"):
        lattice_volume(torch.eye(3))
    with pytest.raises(ValueError, match="lengths and angles"):
        lattice_from_params(torch.ones(2, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="batch must have shape"):
        frac_to_cart(torch.zeros(4, 3), lat, torch.zeros(3, dtype=torch.long))
