"""Relaxation with CHGNet against answers known by construction (a few 5-atom cells each)."""
import socket

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.physics.potential import load_potential
from genlowdim.physics.relax import RelaxSettings, relax_structures, rmsd_to_relaxed

SETTINGS = RelaxSettings(optimizer="BFGS", fmax=0.05, steps=100, batch_size=8)


def srtio3() -> Structure:
    """perov_5 train entry 14806 (SrTiO3, heat_ref -0.23 eV/atom, the lower of its formula's two entries),
    Niggli-reduced as the models see it; coordinates as in the dataset to 1e-6."""
    return Structure(Lattice.cubic(3.931193), ["Sr", "Ti", "O", "O", "O"],
                     [[0.991201, 0, 0], [0.482977, 0.5, 0.5], [0.503345, 0, 0.5], [0.503345, 0.5, 0],
                      [0.003487, 0.5, 0.5]])


def perturbed(structure: Structure, distance: float, seed: int = 0) -> Structure:
    """Each atom moved by ``distance`` Å in a seeded random direction."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(len(structure), 3))
    d *= distance / np.linalg.norm(d, axis=1, keepdims=True)
    out = structure.copy()
    for i in range(len(out)):
        out.translate_sites([i], d[i], frac_coords=False, to_unit_cell=True)
    return out


@pytest.fixture(scope="module")
def relaxed_pair():
    """SrTiO3 and the same crystal with every atom moved by 0.15 Å, relaxed together (one batch)."""
    original, moved = srtio3(), perturbed(srtio3(), 0.15)
    return original, moved, relax_structures([original, moved], SETTINGS, load_potential())


def test_dft_relaxed_crystal_barely_moves(relaxed_pair):
    # measured (CHGNet 0.3.0, BFGS, fmax 0.05): RMSD 0.0056 Å, energy -0.0011 eV/atom, volume +1.3%, 4 steps
    _, _, (result, _) = relaxed_pair
    assert result.error is None and result.converged
    assert result.rmsd < 0.02
    assert abs(result.energy_final - result.energy_initial) < 0.01
    assert abs(result.volume_change) < 0.03


def test_perturbed_crystal_relaxes_back(relaxed_pair):
    # measured: 0.111 Å from its start, 0.035 Å from the relaxed original, energies equal within 2e-4 eV/atom
    _, _, (reference, result) = relaxed_pair
    assert result.converged and result.energy_initial > result.energy_final
    assert result.rmsd > 0.05
    assert rmsd_to_relaxed(reference.relaxed, result.relaxed) < 0.06
    assert abs(result.energy_final - reference.energy_final) < 0.005


def oxygen_near_titanium(distance: float) -> Structure:
    """Cubic SrTiO3 (a = 3.931 Å) with the apical O moved along z to ``distance`` Å from Ti."""
    a = 3.931193
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, 0, .5], [0, .5, .5], [.5, .5, .5 - distance / a]])


def test_atoms_half_an_angstrom_apart_have_large_energy_and_force():
    """O 0.5 Å from Ti against the ideal 1.97 Å: far higher energy per atom and large forces.

    Measured (CHGNet 0.3.0), energy per atom and largest force along the O-Ti distance: 0.5 Å -4.37 eV,
    21.7 eV/Å; 0.8 Å +2.85, 76; 1.2 Å -5.30, 92; 1.6 Å -8.21, 8.4; 1.97 Å -8.42, 0.2. The repulsion is not
    monotonic below ~0.8 Å (no training data there), so this checks the size of the penalty, not its
    direction."""
    v_close, v_ideal = load_potential().evaluate([oxygen_near_titanium(0.5), oxygen_near_titanium(3.931193 / 2)])
    assert v_close["energy_per_atom"] - v_ideal["energy_per_atom"] > 2.0
    assert np.abs(v_close["forces"]).max() > 5.0
    assert np.abs(v_ideal["forces"]).max() < 0.5


def test_failing_structure_is_recorded_not_fatal():
    """A lone atom with no neighbour within CHGNet's 6 Å graph cutoff fails alone; the other relaxes."""
    lone = Structure(Lattice.cubic(7.0), ["Si"], [[0, 0, 0]])
    results = relax_structures([lone, srtio3()], RelaxSettings(steps=2), load_potential())
    assert results[0].error is not None and "isolated" in results[0].error
    assert results[0].relaxed is None
    assert results[1].error is None and results[1].relaxed is not None


def test_runs_offline(monkeypatch):
    """Loading the weights and relaxing open no socket."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    load_potential.cache_clear()
    try:
        result = relax_structures([srtio3()], RelaxSettings(steps=3), load_potential())[0]
    finally:
        load_potential.cache_clear()
    assert result.error is None and result.energy_final < 0


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="optimizer"):
        RelaxSettings(optimizer="LBFGS-B")
    with pytest.raises(ValueError, match="fmax"):
        RelaxSettings(fmax=0)


def test_one_backward_pass_equals_chgnets_own_prediction():
    """The single ``autograd.grad`` over positions and strains gives CHGNet's ``predict_graph(task="efs")``
    (float32: forces within 1e-4 eV/Å, stress within 1e-3 GPa, measured up to 3e-5 and 1.3e-4)."""
    from genlowdim.physics.potential import energy_forces_stress

    model = load_potential().model
    graphs = [model.graph_converter(s) for s in (srtio3(), perturbed(srtio3(), 0.15), oxygen_near_titanium(1.2))]
    for ours, theirs in zip(energy_forces_stress(model, graphs), model.predict_graph(graphs, task="efs")):
        np.testing.assert_allclose(ours["e"], theirs["e"], atol=1e-6)
        np.testing.assert_allclose(ours["f"], theirs["f"], atol=1e-4)
        np.testing.assert_allclose(ours["s"], theirs["s"], atol=1e-3)


def test_forces_computed_once_per_step_change_nothing(monkeypatch):
    """``make_filter`` reuses the filter's forces within a step; ASE's own FrechetCellFilter recomputes them.
    With ASE's positions (``reuse_log=False``) both give the same trajectory, bit for bit, in fewer filter
    evaluations; with the positions' logarithm taken from the forces' one (the default) the trajectory is
    the same to float rounding only (log(N F) = log(N) I + log(F) exactly, but not in floating point), here
    within 1e-8 Å and 1e-8 eV/atom after six BFGS steps."""
    import ase.filters

    import genlowdim.physics.relax as relax

    calls = {"n": 0}
    original = ase.filters.FrechetCellFilter.get_forces

    def counted(self, **kwargs):
        calls["n"] += 1
        return original(self, **kwargs)

    def relax_with(make):
        monkeypatch.setattr(relax, "make_filter", make)
        calls["n"] = 0
        return relax_structures([start], settings, load_potential())[0], calls["n"]

    monkeypatch.setattr(ase.filters.FrechetCellFilter, "get_forces", counted)
    settings, start = RelaxSettings(optimizer="BFGS", steps=6), perturbed(srtio3(), 0.15)
    make_filter = relax.make_filter
    once, once_calls = relax_with(lambda atoms, **kw: make_filter(atoms, reuse_log=False, **kw))
    shared, shared_calls = relax_with(make_filter)
    plain, plain_calls = relax_with(ase.filters.FrechetCellFilter)
    assert once.steps == shared.steps == plain.steps == 6 and once.energy_final == plain.energy_final
    np.testing.assert_array_equal(once.relaxed.cart_coords, plain.relaxed.cart_coords)
    np.testing.assert_array_equal(once.relaxed.lattice.matrix, plain.relaxed.lattice.matrix)
    assert once_calls == shared_calls == 7 and plain_calls == 13   # 7 states: one evaluation each, not two
    assert abs(shared.energy_final - plain.energy_final) < 1e-8
    np.testing.assert_allclose(shared.relaxed.cart_coords, plain.relaxed.cart_coords, rtol=0, atol=1e-8)
    np.testing.assert_allclose(shared.relaxed.lattice.matrix, plain.relaxed.lattice.matrix, rtol=0, atol=1e-8)
    assert np.abs(shared.relaxed.cart_coords - start.cart_coords).max() > 0.01    # it did move


def test_filter_positions_carry_the_logarithm_of_a_known_deformation():
    """A cell deformed by F = exp(A) (A known) gives the filter's cell coordinates N (log(N) I + A), N the
    number of atoms, as ASE's FrechetCellFilter does (to 1e-12); the atoms' rows are the undeformed ones."""
    from ase.filters import FrechetCellFilter
    from pymatgen.io.ase import AseAtomsAdaptor
    from scipy.linalg import expm

    from genlowdim.physics.relax import make_filter

    atoms = AseAtomsAdaptor.get_atoms(perturbed(srtio3(), 0.15))
    undeformed = atoms.positions.copy()
    ours, ase_filter = make_filter(atoms), FrechetCellFilter(atoms)
    a = np.array([[0.03, 0.01, -0.02], [0.005, -0.04, 0.01], [0.02, 0.0, 0.05]])
    atoms.set_cell(atoms.cell.array @ expm(a).T, scale_atoms=True)   # deformation gradient F = exp(A)
    n = len(atoms)
    positions = ours.get_positions()
    np.testing.assert_allclose(positions[n:], n * (np.log(n) * np.eye(3) + a), rtol=0, atol=1e-12)
    np.testing.assert_allclose(positions[:n], undeformed, rtol=0, atol=1e-12)
    np.testing.assert_allclose(positions, ase_filter.get_positions(), rtol=0, atol=1e-12)
    ours.set_positions(positions)          # and back: the same cell
    np.testing.assert_allclose(ours.get_positions(), positions, rtol=0, atol=1e-12)


def test_relaxation_under_pressure_balances_the_stress_and_shrinks_the_cell():
    """At 10 GPa the relaxed cell's stress is -10 GPa on the diagonal (the filter minimises E + PV, so the
    potential's stress balances the pressure: to fmax 0.01 eV/Å on the cell's degrees of freedom, about
    0.15 GPa here), and the cell is smaller than at zero pressure by about P/B (SrTiO3: B ≈ 170-180 GPa, so
    5-6%; bounded loosely at 2-10%). The record names the pressure; at zero pressure it is absent.
    Measured (CHGNet 0.3.0): 6.0% smaller, diagonal stress -9.92 / -10.04 / -10.04 GPa, 17 steps."""
    from genlowdim.physics.potential import GPA_TO_EV_PER_A3

    base = dict(optimizer="BFGS", fmax=0.01, steps=200, batch_size=1)
    free, pressed = (relax_structures([srtio3()], RelaxSettings(**base, pressure=p), load_potential())[0]
                     for p in (0.0, 10.0))
    assert free.converged and pressed.converged
    stress_gpa = load_potential().evaluate([pressed.relaxed])[0]["stress"] / GPA_TO_EV_PER_A3
    np.testing.assert_allclose(np.diag(stress_gpa), -10.0, atol=0.3)
    shrink = 1.0 - pressed.relaxed.volume / free.relaxed.volume
    assert 0.02 < shrink < 0.10
    expected = pressed.energy_final + 10.0 * GPA_TO_EV_PER_A3 * pressed.relaxed.volume / 5
    assert abs(pressed.extra["enthalpy_per_atom_final"] - expected) < 1e-9
    assert "enthalpy_per_atom_final" not in free.extra
    assert RelaxSettings(pressure=10.0).to_dict()["pressure"] == 10.0
    assert "pressure" not in RelaxSettings().to_dict()
    with pytest.raises(ValueError, match="pressure"):
        RelaxSettings(pressure=float("nan"))
