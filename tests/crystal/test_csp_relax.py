"""``csp --relax``: candidates re-ranked by relaxed energy (ties keep the model's order), cells described at a
stated tolerance, symmetrised CIFs beside the P1 ones, settings in the manifest."""
import json

from genlowdim.cli import main
from genlowdim.crystal.tasks.csp_relax import group_of, relax_candidates
from genlowdim.physics.relax import RelaxSettings
from genlowdim.structures.io import read_structures, write_extxyz
from genlowdim.structures.symmetry import cell_summary
from tests.physics.test_relax import oxygen_near_titanium, srtio3


def test_cell_summary_states_its_tolerance():
    """The dataset's SrTiO3 has atoms ~0.035 Å off the cubic sites: cubic at 0.1 Å, tetragonal at 0.01 Å."""
    cell = cell_summary(srtio3(), symprec=0.1)
    assert cell["space_group"] == "Pm-3m" and cell["space_group_number"] == 221 and cell["symprec"] == 0.1
    assert cell_summary(srtio3(), symprec=0.01)["space_group"] == "P4mm"
    assert abs(cell["volume_per_atom"] - 3.931193 ** 3 / 5) < 1e-6 and cell["alpha"] == 90.0


def test_group_of_drops_the_rank_only_of_ranked_ids():
    assert group_of("SrTiO3_012", True) == "SrTiO3" and group_of("perov_5:val:7", False) == "perov_5:val:7"


def test_lower_energy_candidate_moves_first(tmp_path):
    """The model ranked the squeezed cell first; unrelaxed energies (steps=0) put the ground state first."""
    write_extxyz([oxygen_near_titanium(1.6), srtio3()], tmp_path / "candidates.extxyz",
                 ids=["SrTiO3_000", "SrTiO3_001"])
    record = relax_candidates(tmp_path, settings=RelaxSettings(steps=0))
    assert [row["nll_rank"] for row in record["candidates"]] == [1, 0]
    relaxed = read_structures(tmp_path / "relaxed" / "candidates.extxyz")
    assert [i for i, _ in relaxed] == ["SrTiO3_000", "SrTiO3_001"]
    assert abs(relaxed[0][1].lattice.a - 3.931193) < 1e-6
    assert (tmp_path / "relaxed" / "cif_symmetrized" / "SrTiO3_000.cif").read_text().count("Pm-3m") >= 1
    assert json.loads((tmp_path / "manifest.json").read_text())["relax"]["tie_margin_ev_per_atom"] == 0.005


def test_benchmark_ids_rank_within_each_truth(tmp_path):
    write_extxyz([srtio3(), oxygen_near_titanium(1.6), srtio3()], tmp_path / "predictions.extxyz",
                 ids=["a", "b", "b"])
    record = relax_candidates(tmp_path, "predictions.extxyz", ranked_ids=False, settings=RelaxSettings(steps=0))
    assert [(row["name"], row["nll_rank"]) for row in record["candidates"]] == [("a", 0), ("b", 1), ("b", 0)]
    assert not (tmp_path / "relaxed" / "cif").exists()


def test_csp_relax_command(tmp_path, capsys):
    out = tmp_path / "csp"
    assert main(["csp", "--model", "perov_5", "--device", "cpu", "--seed", "3", "--sampler", "ald_fast",
                 "--steps", "2", "--formula", "SrTiO3", "--samples", "2", "--draws", "8", "--opt-steps", "3",
                 "--pool-size", "20", "--relax", "--relax-steps", "3", "--symprec", "0.05",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # two candidates, each with its nearest training entry, then the two relaxed
    assert printed.count("at symprec 0.05 Å") == 6 and "model rank" in printed
    assert printed.count("nearest training entry (") == 2
    assert len(list((out / "cif_symmetrized").glob("*.cif"))) == 2
    assert len(list((out / "relaxed" / "cif").glob("*.cif"))) == 2
    relax = json.loads((out / "manifest.json").read_text())["relax"]
    assert relax["settings"]["steps"] == 3 and relax["potential"]["potential"] == "CHGNet"
    # the default, chosen on val: each candidate keeps its space group, at the run's --symprec
    assert relax["settings"]["constraint"].startswith("ase.constraints.FixSymmetry(symprec=0.05)")
    assert main(["csp", "--model", "perov_5", "--formula", "SrTiO3", "--fmax", "0", "--out", str(out)]) == 2


def test_relax_symmetry_flag_is_on_by_default_and_turns_off():
    from genlowdim.cli import build_parser

    base = ["csp", "--model", "perov_5", "--formula", "SrTiO3", "--relax", "--out", "x"]
    assert build_parser().parse_args(base).relax_symmetry is True
    assert build_parser().parse_args(base + ["--no-relax-symmetry"]).relax_symmetry is False
