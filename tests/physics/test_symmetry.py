"""Symmetry-preserving relaxation (ASE ``FixSymmetry``) against answers known by construction.

An ideal cubic perovskite ABO3 (Pm-3m, A at 1a, B at 1b, O at 3c) has no free coordinate: its only degree
of freedom under its space group is the lattice parameter a. A symmetry-preserving relaxation must
therefore keep a = b = c, 90° angles and space group 221, and end at the minimum of E(a) along the cubic
cells, which a one-dimensional search finds independently.
"""
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.physics.potential import load_potential
from genlowdim.physics.relax import RelaxSettings, relax_structures, space_group_number

SYMPREC = 0.1
# fmax 0.01 eV/Å: the filter's cell "forces" are the stress times V / N (N atoms), so convergence leaves a
# residual stress of at most N fmax / V, about 0.13 GPa for these 5-atom cells: ~0.001 Å of a at the bulk
# modulus of an oxide perovskite (~150 GPa); fmax 0.05 would allow ~0.005 Å, the size of the bound below
SETTINGS = RelaxSettings(optimizer="FIRE", fmax=0.01, steps=300, symmetry=True, symprec=SYMPREC)


def cubic_perovskite(a: float, a_site: str = "Sr", b_site: str = "Ti") -> Structure:
    """Ideal Pm-3m ABO3 with lattice parameter ``a`` Å (B at the cell centre, O at the face centres)."""
    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, 0, .5], [0, .5, .5], [.5, .5, 0]])


def jiggled(structure: Structure, strain: float = 0.004, displacement: float = 0.01, seed: int = 0) -> Structure:
    """A random symmetric strain with entries up to ``strain`` and each atom moved ``displacement`` Å in a
    random direction: both well below the 0.1 Å symmetry tolerance, far above float noise."""
    rng = np.random.default_rng(seed)
    e = rng.uniform(-strain, strain, (3, 3))
    out = Structure(Lattice(structure.lattice.matrix @ (np.eye(3) + (e + e.T) / 2)), structure.species,
                    structure.frac_coords)
    d = rng.normal(size=(len(out), 3))
    d *= displacement / np.linalg.norm(d, axis=1, keepdims=True)
    for i in range(len(out)):
        out.translate_sites([i], d[i], frac_coords=False)
    return out


def cubic_minimum(a_site: str, b_site: str, low: float, high: float, tol: float = 1e-4) -> float:
    """Lattice parameter (Å) minimising the potential's energy over ideal cubic cells (golden section)."""
    potential, ratio = load_potential(), (np.sqrt(5) - 1) / 2

    def energy(a):
        return potential.evaluate([cubic_perovskite(a, a_site, b_site)])[0]["energy_per_atom"]

    while high - low > tol:
        x1, x2 = high - ratio * (high - low), low + ratio * (high - low)
        low, high = (low, x2) if energy(x1) < energy(x2) else (x1, high)
    return 0.5 * (low + high)


@pytest.fixture(scope="module")
def symmetric_pair():
    """SrTiO3 (stable cubic, a 4.0 Å start) and its A/B twin TiSrO3 (a 4.3 Å start), each jiggled below
    symprec, relaxed together in one lockstep batch with FixSymmetry."""
    starts = [jiggled(cubic_perovskite(4.0)), jiggled(cubic_perovskite(4.3, "Ti", "Sr"), seed=1)]
    return starts, relax_structures(starts, SETTINGS, load_potential())


@pytest.mark.parametrize("k", [0, 1])
def test_cubic_cell_stays_cubic(symmetric_pair, k):
    starts, results = symmetric_pair
    result = results[k]
    assert space_group_number(starts[k], 1e-3) == 1          # the jiggle breaks every symmetry at 1e-3 Å
    assert result.error is None and result.converged
    assert result.extra == {"space_group_initial": 221, "space_group_final": 221}
    assert space_group_number(result.relaxed, 1e-5) == 221   # exactly cubic, not just within 0.1 Å
    lattice = result.relaxed.lattice
    np.testing.assert_allclose(lattice.abc, [lattice.a] * 3, atol=1e-6)
    np.testing.assert_allclose(lattice.angles, [90, 90, 90], atol=1e-6)


@pytest.mark.parametrize("k, sites, bracket", [(0, ("Sr", "Ti"), (3.7, 4.2)), (1, ("Ti", "Sr"), (4.1, 4.7))])
def test_relaxed_cell_is_the_minimum_of_e_of_a(symmetric_pair, k, sites, bracket):
    """The only free parameter is a: the relaxed a is where E(a) is lowest along ideal cubic cells, within
    what the convergence threshold leaves (see SETTINGS; with fmax 0.05 the SrTiO3 cell ended more than
    0.005 Å from this minimum)."""
    a_min = cubic_minimum(*sites, *bracket)
    assert abs(symmetric_pair[1][k].relaxed.lattice.a - a_min) < 0.003


def test_symmetry_keeps_the_higher_energy_twin(symmetric_pair):
    """The twin TiSrO3 stays itself under FixSymmetry: more than 2 eV/atom above SrTiO3 (measured -5.63
    against -8.42 eV/atom). Freely relaxed, its oxygens move to surround the Sr and it falls to SrTiO3's
    energy (measured -8.42 after 255 FIRE steps): the free relaxation decides the twin, not the model."""
    _, (sto, twin) = symmetric_pair
    assert twin.energy_final - sto.energy_final > 2.0


def test_lockstep_batch_equals_ase_one_at_a_time(symmetric_pair):
    """FixSymmetry lives on the Atoms, so the batched SinglePointCalculator path is constrained exactly as
    CHGNet's own ASE calculator with ASE's optimiser run on one structure: same steps, same cell."""
    import ase.optimize
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    starts, results = symmetric_pair
    # on_isolated_atoms: the calculator sets it on the shared, cached model; keep load_potential's "error"
    calc = CHGNetCalculator(model=load_potential().model, use_device="cpu", on_isolated_atoms="error")
    for start, result in zip(starts, results):
        atoms = AseAtomsAdaptor.get_atoms(start)
        atoms.calc = calc
        atoms.set_constraint(FixSymmetry(atoms, symprec=SYMPREC))
        optimizer = ase.optimize.FIRE(FrechetCellFilter(atoms), logfile=None)
        optimizer.run(fmax=SETTINGS.fmax, steps=SETTINGS.steps)
        assert optimizer.nsteps == result.steps
        assert abs(atoms.get_potential_energy() / len(atoms) - result.energy_final) < 1e-4
        np.testing.assert_allclose(atoms.cell.cellpar()[:3], result.relaxed.lattice.abc, atol=1e-4)


def test_record_states_the_constraint():
    free, fixed = RelaxSettings().to_dict(), RelaxSettings(symmetry=True, symprec=0.05).to_dict()
    assert free["symmetry"] is False and free["constraint"] is None
    assert fixed["symmetry"] is True and fixed["symprec"] == 0.05
    assert fixed["constraint"].startswith("ase.constraints.FixSymmetry(symprec=0.05)")


def test_free_relaxation_records_space_groups_and_no_constraint(tmp_path):
    from genlowdim.cli import main
    from genlowdim.physics.folder import read_records
    from genlowdim.structures.io import write_cif

    write_cif([cubic_perovskite(3.94)], tmp_path / "in", ids=["sto"])
    assert main(["relax", str(tmp_path / "in"), "--out", str(tmp_path / "free"), "--steps", "0"]) == 0
    assert main(["relax", str(tmp_path / "in"), "--out", str(tmp_path / "sym"), "--steps", "0", "--symmetry",
                 "--symprec", "0.05"]) == 0
    import json

    free, sym = (json.loads((tmp_path / d / "relax.json").read_text()) for d in ("free", "sym"))
    assert free["settings"]["constraint"] is None and "FixSymmetry" in sym["settings"]["constraint"]
    assert read_records(tmp_path / "sym")[0]["space_group_final"] == 221
    assert main(["relax", str(tmp_path / "in"), "--out", str(tmp_path / "bad"), "--symprec", "0"]) == 2


def test_settings_reject_bad_symmetry_values():
    with pytest.raises(ValueError, match="symprec"):
        RelaxSettings(symmetry=True, symprec=-0.1)
    with pytest.raises(ValueError, match="symmetry"):
        RelaxSettings(symmetry="yes")
