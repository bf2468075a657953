"""``genlowdim evaluate`` and the Python API end to end on a few perov_5 crystals (in-process CLI)."""
from __future__ import annotations

import csv
import json

import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.cli import main
from genlowdim.structures.io import write_cif, write_extxyz
from tests.metrics._data import perov_structures

N = 5


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    ss = list(perov_structures(N))
    ids = [f"p{i}" for i in range(N)]
    write_extxyz(ss, tmp_path / "ref.extxyz", ids=ids)
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])
    sample_dir = tmp_path / "samples"
    write_extxyz(ss + [close], sample_dir / "samples.extxyz", ids=ids + ["bad"])
    return tmp_path, ss, ids


def test_generation_against_itself_from_a_sample_directory(files, capsys):
    tmp, _, _ = files
    out = tmp / "eval"
    assert main(["evaluate", str(tmp / "samples"), "--reference", str(tmp / "ref.extxyz"),
                 "--dataset", "perov_5", "--out", str(out), "--workers", "1"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    m = report["metrics"]
    assert m["struct_valid"] == pytest.approx(N / (N + 1)) and m["comp_valid"] == 1.0
    assert m["cov_recall"] == 1.0 and m["cov_precision"] == pytest.approx(N / (N + 1))
    assert m["amsd_recall"] == pytest.approx(0.0, abs=1e-12) and m["match_rate"] is None
    assert m["unique"] == 1.0 and m["wdist_prop"] is None
    assert report["params"]["struct_valid"]["invalid_reasons"]["too_close"] == 1
    assert report["params"]["cov_recall"]["struct_cutoff"] == 0.2
    assert report["params"]["cov_recall"]["comp_cutoff"] == 4.0
    rows = list(csv.DictReader((out / "structures.csv").open()))
    assert rows[-1]["id"] == "bad" and rows[-1]["invalid_reason"] == "too_close"
    assert (out / "hist_density.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "cov_recall" in printed
    # the counts, the protocol and each metric's unit: printed and in metrics.json
    assert report["summary"]["counts"] == {"generated": N + 1, "reference": N}
    assert "0.2 / 4.0" in report["summary"]["protocol"]
    assert report["summary"]["units"]["wdist_density"].startswith("g/cm^3")
    assert f"{N + 1} generated crystals against {N} reference crystals" in printed
    assert "protocol: CDVAE generation" in printed and "g/cm^3" in printed
    assert "compare runs of equal size" in printed


def test_reconstruction_mode_pairs_by_id(files):
    tmp, ss, ids = files
    write_cif(ss[::-1], tmp / "pred.cif", ids=ids[::-1])  # same crystals, reversed order
    out = tmp / "rec"
    assert main(["evaluate", str(tmp / "pred.cif"), "--reference", str(tmp / "ref.extxyz"),
                 "--mode", "reconstruction", "--out", str(out), "--workers", "1"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["metrics"]["match_rate"] == 1.0
    assert report["metrics"]["rms_dist"] == pytest.approx(0.0, abs=1e-6)
    assert report["params"]["match_rate"]["stol"] == 0.5
    assert report["summary"]["counts"] == {"predictions": N, "truths": N}
    assert "StructureMatcher(stol 0.5, ltol 0.3, angle_tol 10" in report["summary"]["protocol"]


def test_cutoffs_flag_changes_the_thresholds(files):
    tmp, _, _ = files
    out = tmp / "cut"
    assert main(["evaluate", str(tmp / "ref.extxyz"), "--reference", str(tmp / "ref.extxyz"),
                 "--cutoffs", "0.0", "0.0", "--out", str(out), "--workers", "1"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["params"]["cov_recall"]["struct_cutoff"] == 0.0
    assert report["metrics"]["cov_recall"] == 1.0  # identical sets: distance 0 <= 0
    assert report["metrics"]["unique"] == 1.0
    # second run: fingerprints of both sets come from the cache; --no-unique leaves unique null
    assert main(["evaluate", str(tmp / "ref.extxyz"), "--reference", str(tmp / "ref.extxyz"),
                 "--cutoffs", "0.0", "0.0", "--out", str(out), "--workers", "1", "--no-unique"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["metrics"]["unique"] is None
    assert report["params"]["cov_recall"]["generated_cache"]["cache_hit"]


def test_unreadable_input_names_the_file(files, capsys):
    tmp, _, _ = files
    bad = tmp / "broken.cif"
    bad.write_text("data_x\n_cell_length_a 3.0\nthis is not a cif\n")
    assert main(["evaluate", str(bad), "--reference", str(tmp / "ref.extxyz"), "--dataset", "perov_5",
                 "--out", str(tmp / "o")]) == 2
    assert "broken.cif" in capsys.readouterr().err
    table = tmp / "rows.csv"
    table.write_text('material_id,cif\nok,"not a cif"\n')
    assert main(["evaluate", str(table), "--reference", str(tmp / "ref.extxyz"), "--dataset", "perov_5",
                 "--out", str(tmp / "o")]) == 2
    assert "rows.csv:0" in capsys.readouterr().err  # file and row
    assert main(["evaluate", str(tmp / "missing.extxyz"), "--reference", str(tmp / "ref.extxyz"),
                 "--out", str(tmp / "o")]) == 2
    assert "missing.extxyz" in capsys.readouterr().err


def test_missing_thresholds_are_a_usage_error(files, capsys):
    tmp, _, _ = files
    assert main(["evaluate", str(tmp / "ref.extxyz"), "--reference", str(tmp / "ref.extxyz"),
                 "--out", str(tmp / "o"), "--workers", "1"]) == 2
    assert "--cutoffs" in capsys.readouterr().err


def test_python_api_with_property_predictor_and_training_set(tmp_path, monkeypatch):
    from genlowdim.metrics.evaluate import evaluate_generation

    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    ss = list(perov_structures(4))

    def volume(structures):  # a stand-in "property predictor" (Å^3)
        return [s.volume for s in structures]

    report = evaluate_generation(ss, ss, dataset="perov_5", train_structures=ss[:2], property_fn=volume,
                                 num_property_samples=3, seed=1, workers=1, out_dir=tmp_path / "api",
                                 cache_dir=tmp_path / "cache", show_progress=False)
    m, params = report["metrics"], report["params"]
    assert m["novel"] == pytest.approx(0.5) and m["unique"] == 1.0
    assert m["wdist_prop"] is not None and params["wdist_prop"]["num_samples_used"] == 3
    assert params["wdist_prop"]["seed"] == 1 and params["wdist_prop"]["reference_property_source"] == "property_fn"
    assert (tmp_path / "api" / "hist_property.png").stat().st_size > 0
    again = evaluate_generation(ss, ss, dataset="perov_5", property_fn=volume, num_property_samples=3,
                                seed=1, workers=1, cache_dir=tmp_path / "cache", show_progress=False)
    assert again["metrics"]["wdist_prop"] == m["wdist_prop"]  # seeded subsample
    assert again["params"]["cov_recall"]["reference_cache"]["cache_hit"]


def test_unknown_dataset_is_a_usage_error(files, capsys):
    tmp, _, _ = files
    assert main(["evaluate", str(tmp / "ref.extxyz"), "--reference", str(tmp / "ref.extxyz"),
                 "--dataset", "perov_6", "--out", str(tmp / "o"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "perov_6" in err and "perov_5" in err


def test_no_generated_fingerprint_means_nothing_is_covered(tmp_path, monkeypatch):
    from genlowdim.metrics.evaluate import evaluate_generation

    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    ref = list(perov_structures(2))
    report = evaluate_generation([None, None], ref, dataset="perov_5", workers=1,
                                 cache_dir=tmp_path, show_progress=False)
    m = report["metrics"]
    assert m["struct_valid"] == 0.0 and m["valid"] == 0.0
    assert m["cov_recall"] == 0.0 and m["cov_precision"] == 0.0 and m["amsd_recall"] is None
    assert report["params"]["struct_valid"]["invalid_reasons"]["construction_failed"] == 2


def test_a_folder_with_unreadable_files_is_evaluated_on_its_good_ones(files, capsys):
    """One bad file never stops a folder: each is named with its reason (stderr and metrics.json), the
    others are evaluated."""
    tmp, ss, ids = files
    folder = tmp / "cifs"
    write_cif(ss, folder, ids=ids)
    (folder / "binary.cif").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff" * 10)
    (folder / "unknown.cif").write_text((folder / "p0.cif").read_text().replace("data_p0", "data_x")
                                        .replace(f" {ss[0][0].specie.symbol} ", " Xx ", 1))
    out = tmp / "eval_folder"
    assert main(["evaluate", str(folder), "--reference", str(tmp / "ref.extxyz"), "--dataset", "perov_5",
                 "--out", str(out), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "binary.cif: cannot read file" in err and "[unreadable file]" in err
    assert "unknown.cif" in err
    assert "the 2 of the generated set count as generated and invalid" in err
    report = json.loads((out / "metrics.json").read_text())
    assert report["metrics"]["cov_recall"] == 1.0   # the five good crystals against themselves
    # the two unreadable files are generated crystals that could not be built: in every denominator
    assert report["metrics"]["struct_valid"] == pytest.approx(5 / 7)
    assert report["metrics"]["cov_precision"] == pytest.approx(5 / 7)
    assert report["params"]["struct_valid"]["invalid_reasons"]["construction_failed"] == 2
    assert sorted(s["where"].rsplit("/", 1)[-1].split(":")[0] for s in report["skipped_inputs"]) == \
        ["binary.cif", "unknown.cif"]


def test_a_flat_generated_cell_counts_as_generated_and_invalid(files, capsys):
    """A decoded lattice of zero volume cannot be read back as a crystal; CDVAE counts such a crystal as
    generated and invalid, so the readable ones alone must not make the denominator."""
    from ase import Atoms
    from ase.io import read, write

    tmp, _, _ = files
    frames = read(tmp / "samples" / "samples.extxyz", index=":")
    flat = Atoms("NaCl", positions=[[0, 0, 0], [1, 1, 1]], cell=[[4, 0, 0], [4, 0, 0], [0, 0, 4]], pbc=True)
    write(tmp / "flat.extxyz", frames + [flat], format="extxyz")
    out = tmp / "eval_flat"
    assert main(["evaluate", str(tmp / "flat.extxyz"), "--reference", str(tmp / "ref.extxyz"),
                 "--dataset", "perov_5", "--out", str(out), "--workers", "1"]) == 0
    assert "not a periodic crystal" in capsys.readouterr().err
    report = json.loads((out / "metrics.json").read_text())
    # N good crystals, the 'bad' pair at 0.6 Å and the flat cell: N valid of N + 2 generated
    assert report["metrics"]["struct_valid"] == pytest.approx(N / (N + 2))
    reasons = report["params"]["struct_valid"]["invalid_reasons"]
    assert reasons["too_close"] == 1 and reasons["construction_failed"] == 1
    assert len(report["skipped_inputs"]) == 1
