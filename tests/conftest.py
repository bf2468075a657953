"""Shared, generic fixtures: a seeded generator, float64 helper, a few small pymatgen structures."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def generator() -> torch.Generator:
    """A torch.Generator seeded with 0 (pass it wherever noise is drawn)."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the body: small problems only lose to thread contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def float64():
    """Run the test body with float64 as the default dtype, restoring the old default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(old)


def _small_structures():
    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    perovskite = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    skewed = Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 62.0, 108.0, 75.0), ["Si", "O", "O"],
                       [[0.1, 0.2, 0.3], [0.55, 0.45, 0.9], [0.8, 0.05, 0.6]])
    return {"NaCl": nacl, "SrTiO3": perovskite, "skewed": skewed}


@pytest.fixture
def small_structures():
    """dict name -> pymatgen Structure: rock-salt NaCl (8 atoms), cubic SrTiO3 perovskite (5 atoms)
    and a skewed triclinic SiO2 cell (3 atoms, angles far from 90°)."""
    return _small_structures()
