"""CSP candidates described against the training crystals of their formula: the nearest-entry rule on cases
whose answer is known by construction, and the report the command writes."""
import json

import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.crystal.tasks.csp_report import (candidate_report, describe_with_training, nearest_training_entry,
                                                training_entries)
from genlowdim.structures.datasets import record_from_structure
from genlowdim.structures.io import write_extxyz


def _perovskite(a: float, swap: bool = False) -> Structure:
    a_site, b_site = ("Ti", "Sr") if swap else ("Sr", "Ti")
    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_the_matching_entry_is_nearest_and_its_volume_error_is_shown():
    """SrTiO3 in perov_5's train split and its A/B twin: a candidate 4.275 Å on a side matches the first."""
    entries = [("twin", _perovskite(4.399, swap=True)), ("right", _perovskite(3.931))]
    near = nearest_training_entry(_perovskite(4.275), entries)
    assert near["material_id"] == "right" and near["rule"] == "matched"
    assert near["rms_dist"] == pytest.approx(0.0, abs=1e-8)
    assert near["vpa_error"] == pytest.approx((4.275 / 3.931) ** 3 - 1, rel=1e-9)
    assert near["a"] == pytest.approx(3.931) and near["volume_per_atom"] == pytest.approx(3.931 ** 3 / 5)
    assert near["space_group"] == "Pm-3m"


def test_without_a_match_the_closest_volume_per_atom_is_nearest():
    entries = [("small", _perovskite(4.0, swap=True)), ("large", _perovskite(4.5, swap=True))]
    near = nearest_training_entry(_perovskite(4.3), entries)
    assert near["material_id"] == "large" and near["rule"] == "closest volume per atom"
    assert near["rms_dist"] is None and near["vpa_error"] == pytest.approx((4.3 / 4.5) ** 3 - 1)
    assert nearest_training_entry(_perovskite(4.3), []) is None


def test_training_entries_are_grouped_by_reduced_formula():
    records = [record_from_structure(s, f"m{k}") for k, s in
               enumerate([_perovskite(3.9), _perovskite(4.4, swap=True), Structure(
                   Lattice.cubic(4.2), ["Ba", "Zr", "O", "O", "O"],
                   [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])])]
    found = training_entries(records, {"SrTiO3", "NaCl"})
    assert list(found) == ["SrTiO3"] and [i for i, _ in found["SrTiO3"]] == ["m0", "m1"]
    rows = describe_with_training([_perovskite(4.0)], ["c0"], found)
    assert rows[0]["nearest_training"]["material_id"] == "m0" and rows[0]["a"] == pytest.approx(4.0)


def test_candidate_report_writes_json_and_symmetrised_cifs(tmp_path):
    write_extxyz([_perovskite(4.1), _perovskite(4.2, swap=True)], tmp_path / "candidates.extxyz",
                 ids=["SrTiO3_000", "SrTiO3_001"])
    records = [record_from_structure(_perovskite(3.9), "st")]
    lines = candidate_report(tmp_path, records, symprec=0.01)
    report = json.loads((tmp_path / "candidates.json").read_text())
    assert report["symprec"] == 0.01 and report["tolerances"]["scale"] is True and report["num_training"] == 1
    first, second = report["candidates"]
    assert first["nearest_training"]["rule"] == "matched"
    assert second["nearest_training"]["rule"] == "closest volume per atom"
    assert len(lines) == 4 and "nearest training entry (matched" in lines[1] and "+" in lines[1]
    assert sorted(p.name for p in (tmp_path / "cif_symmetrized").iterdir()) == ["SrTiO3_000.cif", "SrTiO3_001.cif"]
