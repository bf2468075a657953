"""Stability figures on cases whose answer is known by construction, and ``genlowdim relax`` end to end."""
import json

import numpy as np
import pytest

from genlowdim.cli import main
from genlowdim.physics.potential import load_potential
from genlowdim.physics.reference import reference_energies
from genlowdim.physics.relax import RelaxSettings
from genlowdim.physics.stability import energy_above_lowest, energy_w1, rmsd_summary, sun_rate
from genlowdim.structures.io import write_cif, write_extxyz
from tests.physics.test_relax import oxygen_near_titanium, srtio3


def test_rmsd_summary_counts_failures_as_not_within():
    result = rmsd_summary([0.05, 0.2, None, 0.1])
    assert result["value"] == 0.5
    assert result["params"]["median_angstrom"] == pytest.approx(0.1)
    assert result["params"]["num_with_rmsd"] == 3


def test_energy_w1_of_a_set_against_itself_is_zero():
    assert energy_w1([-1.0, -2.0, None], [-2.0, -1.0])["value"] == 0.0
    assert energy_w1([-1.0], [-1.5])["value"] == pytest.approx(0.5)


def test_energy_above_lowest_and_sun():
    lowest = {"SrTiO3": -8.4}
    e_above = energy_above_lowest(["SrTiO3", "SrTiO3", "BaTiO3"], [-8.4, -8.25, -8.0], lowest)
    assert e_above[0] == 0.0 and e_above[1] == pytest.approx(0.15) and np.isnan(e_above[2])
    rates = sun_rate(e_above, unique=[True, True, True], novel=[False, True, True])
    assert rates["stable"]["value"] == pytest.approx(1 / 3)
    assert rates["stable"]["params"]["num_no_reference_or_failed"] == 1
    assert rates["sun"]["value"] == 0.0
    assert sun_rate(e_above)["sun"]["value"] is None


def test_lowest_reference_entry_is_zero_above_itself(tmp_path, monkeypatch):
    """Two polymorphs of SrTiO3 as the 'dataset': the lower one is 0 eV/atom above the lowest, and a
    second call reads the cache instead of relaxing."""
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "polymorphs.extxyz"
    write_extxyz([srtio3(), oxygen_near_titanium(1.6)], path, ids=["ground", "squeezed"])
    settings = RelaxSettings(optimizer="BFGS", steps=0)   # energies of the structures as given
    ref = reference_energies({"SrTiO3", "BaTiO3"}, str(path), ("all",), settings, load_potential())
    assert set(ref) == {"SrTiO3"} and [name for name, _ in ref["SrTiO3"]] == ["all:ground", "all:squeezed"]
    energies = dict(ref["SrTiO3"])
    lowest = {"SrTiO3": min(energies.values())}
    e_above = energy_above_lowest(["SrTiO3", "SrTiO3"], [energies["all:ground"], energies["all:squeezed"]],
                                  lowest)
    assert e_above[0] == 0.0 and e_above[1] > 0.1
    monkeypatch.setattr("genlowdim.physics.relax.relax_structures", _refuse)
    assert reference_energies({"SrTiO3"}, str(path), ("all",), settings, load_potential()) == ref


def _refuse(*args, **kwargs):
    raise AssertionError("relaxed again instead of reading the cache")


def test_relax_command_writes_records_and_resumes(tmp_path, monkeypatch):
    from pymatgen.core import Lattice, Structure

    lone = Structure(Lattice.cubic(7.0), ["Si"], [[0, 0, 0]])
    write_cif([srtio3(), lone], tmp_path / "in", ids=["sto", "lone"])
    out = tmp_path / "out"
    args = ["relax", str(tmp_path / "in"), "--out", str(out), "--steps", "2", "--batch-size", "1"]
    assert main(args) == 0
    report = json.loads((out / "relax.json").read_text())
    records = {r["id"]: r for r in report["records"]}
    assert records["lone"]["error"] and records["sto"]["error"] is None
    assert records["sto"]["steps"] <= 2 and records["sto"]["energy_per_atom_final"] < 0
    assert report["settings"]["fmax"] == 0.05 and "StructureMatcher" in report["settings"]["rmsd"]
    assert (out / "cif" / "sto.cif").is_file() and (out / "relaxed.extxyz").is_file()
    monkeypatch.setattr("genlowdim.physics.relax.relax_structures", _refuse)
    assert main(args) == 0                                       # resumed: nothing relaxed again
    assert main(args[:-4] + ["--steps", "3", "--batch-size", "1"]) == 2   # other settings: refused


def test_rank_by_energy_keeps_model_order_within_margin():
    from genlowdim.physics.ranking import rank_by_energy

    assert rank_by_energy([-1.0, -1.2, None, -1.198]) == [1, 3, 0, 2]
    assert rank_by_energy([-1.0, -1.2, None, -1.198], margin=0.01) == [1, 3, 0, 2]
    assert rank_by_energy([-1.199, -1.2, -0.5], margin=0.005) == [0, 1, 2]   # a tie: model order kept
    with pytest.raises(ValueError):
        rank_by_energy([-1.0], margin=-1)


def test_rank_by_arrangement_names_an_arrangement_among_the_highest_symmetry():
    from genlowdim.physics.ranking import rank_by_arrangement

    # 0: arrangement A (48 ops); 1: an unrelated low-symmetry minimum, lowest of all; 2: arrangement B (48
    # ops), lower than A; 3: a distorted cell of B (8 ops), lower still; 4: failed
    energies = [-1.0, -1.5, -1.1, -1.2, None]
    orders = [48, 2, 48, 8, 1]
    same = lambda i, j: {i, j} == {2, 3}   # noqa: E731
    assert rank_by_arrangement(energies, orders, same) == [3, 2, 0, 1, 4]
    # B's members within the margin of each other keep the model's order
    assert rank_by_arrangement([-1.0, -1.5, -1.2, -1.198, None], orders, same, margin=0.005) == [2, 3, 0, 1, 4]
    assert rank_by_arrangement([None, None], [1, 1], same) == [0, 1]


def test_records_round_trip_to_results():
    from genlowdim.physics.folder import results_from_records
    from genlowdim.physics.relax import RelaxResult

    result = RelaxResult(energy_initial=-8.0, energy_final=-8.1, rmsd=0.02, volume_change=0.01, steps=5,
                         converged=True)
    record = {"index": 0, "id": "a", **result.to_record()}
    back = results_from_records([record])[0]
    assert back.to_record() == result.to_record()


def test_evaluate_stability_reuses_a_relax_folder(tmp_path, monkeypatch):
    """``evaluate --stability DIR``: the relax folder's results enter metrics.json without relaxing the
    samples again; SrTiO3 has perov_5 entries, so it is stable or not, never "no reference"."""
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(tmp_path / "cache"))
    samples = tmp_path / "samples.extxyz"
    write_extxyz([srtio3(), oxygen_near_titanium(1.6), srtio3()], samples, ids=["a", "b", "c"])
    relaxed = tmp_path / "relaxed"
    assert main(["relax", str(samples), "--out", str(relaxed), "--steps", "3"]) == 0
    calls = []
    real = __import__("genlowdim.physics.relax", fromlist=["relax_structures"]).relax_structures
    monkeypatch.setattr("genlowdim.physics.relax.relax_structures",
                        lambda structures, *a, **k: calls.append(len(structures)) or real(structures, *a, **k))
    out = tmp_path / "eval"
    assert main(["evaluate", str(samples), "--reference", str(samples), "--cutoffs", "1", "1",
                 "--stability", str(relaxed), "--out", str(out), "--workers", "1"]) == 0
    block = json.loads((out / "metrics.json").read_text())["stability"]
    assert block["stable"]["params"]["num_no_reference_or_failed"] == 0
    assert block["stable"]["params"]["relax_settings"]["steps"] == 3
    assert block["sun"]["value"] is None or block["sun"]["params"]["num_sun"] <= 1   # "c" repeats "a"
    assert all(n != 3 for n in calls)                              # only reference entries were relaxed
    other = tmp_path / "other.extxyz"
    write_extxyz([srtio3()], other, ids=["x"])
    assert main(["evaluate", str(other), "--reference", str(samples), "--cutoffs", "1", "1",
                 "--stability", str(relaxed), "--out", str(out)]) == 2
