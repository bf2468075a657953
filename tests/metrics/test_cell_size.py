"""Cell-size errors beside the scaled match: answers known by construction."""
from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.metrics.cell_size import cell_size, lattice_errors, volume_per_atom_error
from genlowdim.metrics.matcher import MatchTolerances
from genlowdim.metrics.matching import reconstruction
from tests.metrics._data import equivalent_copy, perov_structures

CDVAE = MatchTolerances()


def _stretched(structure, factors):
    """The crystal with lattice vector i multiplied by factors[i] (fractional coordinates kept)."""
    matrix = structure.lattice.matrix * np.asarray(factors, float)[:, None]
    return Structure(Lattice(matrix), structure.species, structure.frac_coords)


def _triclinic():
    """Three atoms in a near-orthogonal cell of distinct lengths: its reduced cell is its own basis."""
    lattice = Lattice.from_parameters(4.0, 5.0, 6.0, 85.0, 95.0, 92.0)
    return Structure(lattice, ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.4, 0.45], [0.1, 0.55, 0.2]])


def _metrics(preds, truths, tol=CDVAE):
    valid = np.ones(len(truths), bool)
    matched = np.isfinite(reconstruction(preds, truths, valid, tolerances=tol)["match_rate"].per_item["rms"])
    return matched, cell_size(preds, truths, valid, matched, tolerances=tol)


def test_a_uniformly_larger_cell_matches_scaled_and_its_volume_error_is_exact():
    truths = list(perov_structures(4))
    preds = [_stretched(s, [1.1] * 3) for s in truths]
    matched, res = _metrics(preds, truths)
    assert matched.all()
    vpa = res["vpa_error_mean"].per_item["vpa_error"]
    np.testing.assert_allclose(vpa, 1.1 ** 3 - 1, rtol=1e-12)
    assert res["vpa_error_median"].value == pytest.approx(1.1 ** 3 - 1, rel=1e-12)
    np.testing.assert_allclose(res["length_error_mean"].per_item["length_errors"], 0.1, atol=1e-9)
    assert res["length_error_mean"].value == pytest.approx(0.1, abs=1e-9)
    # 10% in every length is inside ltol 0.3: sites compared in the average cell coincide, so it matches
    # unscaled too; with ltol 0.05 only the scaled matcher accepts it
    assert res["match_rate_unscaled"].value == 1.0
    tight = MatchTolerances(ltol=0.05)
    matched, res = _metrics(preds, truths, tight)
    assert matched.all() and res["match_rate_unscaled"].value == 0.0
    assert res["match_rate_unscaled"].params["scale"] is False


def test_a_cell_stretched_beyond_ltol_matches_only_scaled():
    truths = list(perov_structures(3))
    preds = [_stretched(s, [1.35] * 3) for s in truths]
    matched, res = _metrics(preds, truths)
    assert matched.all() and res["match_rate_unscaled"].value == 0.0
    assert res["vpa_error_mean"].value == pytest.approx(1.35 ** 3 - 1, rel=1e-12)
    assert res["vpa_error_mean"].params["scaled_match_rate_with_vpa_error_within"] == {"0.05": 0.0, "0.1": 0.0}


def test_an_equivalent_copy_has_no_cell_error():
    rng = np.random.default_rng(0)
    truths = list(perov_structures(5)) + [_triclinic()]
    preds = [equivalent_copy(s, rng) for s in truths]
    matched, res = _metrics(preds, truths)
    assert matched.all() and res["match_rate_unscaled"].value == 1.0
    np.testing.assert_allclose(res["vpa_error_mean"].per_item["vpa_error"], 0.0, atol=1e-12)
    np.testing.assert_allclose(res["length_error_mean"].per_item["length_errors"], 0.0, atol=1e-9)
    np.testing.assert_allclose(res["length_error_mean"].per_item["angle_error"], 0.0, atol=1e-6)
    assert res["vpa_error_mean"].params["scaled_match_rate_with_vpa_error_within"]["0.05"] == 1.0


def test_a_distorted_cell_shows_which_length_is_wrong():
    truth = _triclinic()
    pred = _stretched(truth, [1.1, 1.0, 1.0])   # a stretched along itself: angles unchanged, volume +10%
    assert volume_per_atom_error(pred, truth) == pytest.approx(0.1, rel=1e-12)
    lengths, angle = lattice_errors(pred, truth, CDVAE)
    np.testing.assert_allclose(sorted(np.abs(lengths)), [0.0, 0.0, 0.1], atol=1e-9)
    assert angle == pytest.approx(0.0, abs=1e-6)
    squeezed = _stretched(truth, [1.0, 0.9, 1.0])
    lengths, _ = lattice_errors(squeezed, truth, CDVAE)
    np.testing.assert_allclose(sorted(lengths), [-0.1, 0.0, 0.0], atol=1e-9)
    assert volume_per_atom_error(squeezed, truth) == pytest.approx(-0.1, rel=1e-12)


def test_invalid_and_unmatched_pairs_are_left_out_and_counted():
    truths = list(perov_structures(3))
    preds = [_stretched(truths[0], [1.2] * 3), truths[0], None]   # a match, a wrong crystal, a failure
    valid = np.array([True, True, False])
    matched = np.isfinite(reconstruction(preds, truths, valid)["match_rate"].per_item["rms"])
    res = cell_size(preds, truths, valid, matched, tolerances=CDVAE)
    vpa = res["vpa_error_mean"].per_item["vpa_error"]
    assert np.isnan(vpa[2]) and np.isfinite(vpa[:2]).all()
    assert res["vpa_error_mean"].params["num_pairs"] == 2
    assert res["length_error_mean"].params["num_pairs"] == int(matched.sum())
    assert res["vpa_error_mean"].params["over_scaled_matches"]["mean"] == pytest.approx(1.2 ** 3 - 1)


def test_evaluate_reports_the_cell_size_beside_the_scaled_match(tmp_path, capsys, monkeypatch):
    """genlowdim evaluate --mode reconstruction on truths and their copies 1.1x larger in every length."""
    import csv
    import json

    from genlowdim.cli import main
    from genlowdim.structures.io import write_extxyz

    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    truths = list(perov_structures(3))
    ids = [f"t{i}" for i in range(3)]
    write_extxyz(truths, tmp_path / "truth.extxyz", ids=ids)
    write_extxyz([_stretched(s, [1.1] * 3) for s in truths], tmp_path / "pred.extxyz", ids=ids)
    out = tmp_path / "eval"
    args = ["evaluate", str(tmp_path / "pred.extxyz"), "--reference", str(tmp_path / "truth.extxyz"),
            "--mode", "reconstruction", "--workers", "1", "--out", str(out)]
    assert main(args + ["--ltol", "0.05"]) == 0
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["match_rate"] == 1.0 and m["match_rate_unscaled"] == 0.0
    assert m["vpa_error_mean"] == pytest.approx(0.331, rel=1e-9) and m["vpa_error_median"] == pytest.approx(0.331)
    assert m["length_error_mean"] == pytest.approx(0.1, abs=1e-9)
    printed = capsys.readouterr().out
    assert "match_rate_unscaled" in printed and "scale=False" in printed and "within 5%: 0.0000" in printed
    row = next(csv.DictReader((out / "structures.csv").open()))
    assert row["matched"] == "True" and row["matched_unscaled"] == "False"
    assert float(row["vpa_error"]) == pytest.approx(0.331, rel=1e-9)
    assert main(args + ["--stol", "-1"]) == 2
    assert "MatchTolerances.stol: must be > 0" in capsys.readouterr().err
