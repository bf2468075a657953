"""Datasets: CDVAE preprocessing, bad-row report, formats, cache, PyG batching, registry, ``data`` CLI."""
from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import genlowdim.structures.datasets as data_module
from genlowdim.cli import main
from genlowdim.crystal.data import load_dataset
from genlowdim.structures.datasets import DataError, _fast_record, parse_dataset_ref, record_from_structure
from genlowdim.structures.io import parse_cif, read_entries, write_cif, write_extxyz, write_json
from genlowdim.structures.registry import DATASETS, UnknownDatasetError, get_spec

PEROV = Path(__file__).resolve().parents[2] / "datasets" / "perov_5"


def perov_rows(split="test"):
    with gzip.open(PEROV / f"{split}.csv.gz", "rt") as fh:
        return list(csv.DictReader(fh))


def write_csv(path, rows, columns=("material_id", "cif", "heat_ref")):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def perov_test(tmp_path_factory):
    """perov_5 test split parsed once (2 worker processes) into a session cache folder."""
    folder = tmp_path_factory.mktemp("perov_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLOWDIM_CACHE_DIR", str(folder))
        dataset = load_dataset("perov_5:test", workers=2)
    return dataset, folder


def test_perov_test_split_second_load_comes_from_the_cache_and_batches(perov_test, monkeypatch):
    dataset, folder = perov_test
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(folder))
    monkeypatch.setattr(data_module, "_build", lambda *a, **k: pytest.fail("parsed again instead of cached"))
    again = load_dataset("perov_5", "test")   # how fast that is: bench/, not a test
    assert len(again) == len(dataset) == 3785 == DATASETS["perov_5"].splits["test"]
    assert again.report.num_skipped == 0 and again.report.notes == []
    assert again.spec.name == "perov_5" and again.property == "heat_ref"
    heat = {r["material_id"]: float(r["heat_ref"]) for r in perov_rows()}
    from torch_geometric.loader import DataLoader

    batch = next(iter(DataLoader([again[i] for i in range(100)], batch_size=64)))
    assert batch.num_graphs == 64 and batch.frac_coords.shape == (320, 3)
    assert batch.lattice.shape == (64, 3, 3) and batch.lengths.shape == (64, 3)
    assert batch.atom_types.dtype == torch.long and batch.frac_coords.dtype == torch.float32
    assert torch.equal(batch.num_atoms, torch.full((64,), 5))
    assert torch.equal(batch.batch, torch.arange(64).repeat_interleave(5))
    expected = torch.tensor([heat[m] for m in batch.material_id], dtype=torch.float32)
    torch.testing.assert_close(batch.y, expected)
    # canonical CDVAE lattice: rebuilt from its own parameters (c along z, a in the xz plane)
    for record in again.records[:50]:
        np.testing.assert_array_equal(record.lattice, Lattice.from_parameters(*record.lengths,
                                                                              *record.angles).matrix)
        assert record.lattice[0, 1] == 0 and np.allclose(record.lattice[2, :2], 0)
        assert ((record.frac_coords >= 0) & (record.frac_coords < 1)).all()


def test_parallel_parse_equals_serial_and_general_path(perov_test, tmp_path):
    dataset, _ = perov_test
    path = write_csv(tmp_path / "slice.csv", perov_rows()[:300])
    serial = load_dataset(path, workers=1, cache=False)
    for a, b in zip(serial.records, dataset.records[:300]):  # dataset was parsed by 2 processes
        assert a.material_id == b.material_id
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
        np.testing.assert_array_equal(a.lattice, b.lattice)
    for entry, fast in zip(read_entries(path)[:150], serial.records):
        general = record_from_structure(parse_cif(entry.payload), entry.material_id, entry.properties)
        assert np.array_equal(fast.atom_types, general.atom_types)
        np.testing.assert_allclose(fast.lattice, general.lattice, atol=1e-12)
        diff = fast.frac_coords - general.frac_coords
        np.testing.assert_allclose(diff - np.round(diff), 0.0, atol=1e-12)
        assert _fast_record(entry, niggli=True) is not None


def test_niggli_reduction_recovers_the_reduced_cell(small_structures):
    s = small_structures["skewed"]
    reduced = s.get_reduced_structure()
    m = reduced.lattice.matrix
    unreduced_lattice = Lattice([m[0], m[1] + 2 * m[0], m[2] - m[1]])
    unreduced = Structure(unreduced_lattice, reduced.species, reduced.cart_coords, coords_are_cartesian=True)
    record = record_from_structure(unreduced, "x", niggli=True)
    np.testing.assert_allclose(np.concatenate([record.lengths, record.angles]),
                               reduced.lattice.parameters, atol=1e-8)
    kept = record_from_structure(unreduced, "x", niggli=False)
    np.testing.assert_allclose(kept.lengths, unreduced_lattice.abc, atol=1e-10)
    # same crystal either way: identical sorted interatomic distance matrices
    for r in (record, kept):
        np.testing.assert_allclose(np.sort(r.to_structure().distance_matrix, axis=None),
                                   np.sort(s.distance_matrix, axis=None), atol=1e-8)


BAD_REASONS = {"unparsable structure", "unknown element", "non-positive volume", "NaN property",
               "too many atoms", "disordered site"}


def bad_rows_csv(path, small_structures):
    good = str(CifWriter(small_structures["SrTiO3"]))
    flat = good.replace("_cell_angle_gamma   90.00000000", "_cell_angle_gamma   180.00000000")
    disordered = str(CifWriter(Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])))
    rows = [{"material_id": "ok-1", "cif": good, "heat_ref": "0.5"},
            {"material_id": "garbage", "cif": "this is not a CIF", "heat_ref": "0.1"},
            {"material_id": "xx", "cif": good.replace(" Sr ", " Xx ").replace("Sr0", "Xx0"), "heat_ref": "0"},
            {"material_id": "flat", "cif": flat, "heat_ref": "0.2"},
            {"material_id": "nan", "cif": good, "heat_ref": "nan"},
            {"material_id": "big", "cif": str(CifWriter(small_structures["NaCl"])), "heat_ref": "1"},
            {"material_id": "partial", "cif": disordered, "heat_ref": "1"},
            {"material_id": "", "cif": good, "heat_ref": "0.25"}]
    return write_csv(path, rows)


def test_bad_rows_are_counted_by_reason_and_strict_names_file_and_row(tmp_path, small_structures, cache):
    path = bad_rows_csv(tmp_path / "mixed.csv", small_structures)
    ds = load_dataset(path, max_atoms=5, property="heat_ref", workers=1)
    assert [r.material_id for r in ds.records] == ["ok-1", "7"]
    assert ds.report.total == 8 and ds.report.loaded == 2
    assert ds.report.skipped == {reason: 1 for reason in BAD_REASONS}
    wheres = {ex["reason"]: ex["where"] for ex in ds.report.examples}
    assert wheres["unparsable structure"] == f"{path}:1" and wheres["too many atoms"] == f"{path}:5"
    assert "mixed.csv" in ds.report.summary() and "6 skipped" in ds.report.summary()
    with pytest.raises(DataError, match=rf"mixed\.csv:1.*unparsable CIF.*6 unusable rows"):
        load_dataset(path, max_atoms=5, property="heat_ref", strict=True, workers=1)
    # without a selected property or atom cap those rows are fine
    relaxed = load_dataset(path, workers=1)
    assert relaxed.report.loaded == 4 and math.isnan(relaxed[2].y.item())
    assert relaxed[0].y.isnan().all() and relaxed.property is None


def test_every_format_gives_the_same_records(tmp_path, small_structures, cache):
    names, structures = list(small_structures), list(small_structures.values())
    write_cif(structures, tmp_path / "cifs", ids=names)
    paths = [tmp_path / "cifs", write_cif(structures, tmp_path / "all.cif.gz", ids=names, multiblock=True)[0],
             write_extxyz(structures, tmp_path / "all.extxyz", ids=names),
             write_json(structures, tmp_path / "all.json", ids=names)]
    reference = {n: record_from_structure(s, n) for n, s in small_structures.items()}
    for path in paths:
        ds = load_dataset(path, workers=1)
        assert sorted(r.material_id for r in ds.records) == sorted(names), path
        for r in ds.records:
            ref = reference[r.material_id]
            np.testing.assert_allclose(r.lattice, ref.lattice, atol=1e-6)
            got = sorted(zip(r.atom_types.tolist(), np.round(r.frac_coords, 5).tolist()))
            want = sorted(zip(ref.atom_types.tolist(), np.round(ref.frac_coords, 5).tolist()))
            assert [g[0] for g in got] == [w[0] for w in want]
            np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=2e-5)


def _cache_entries(cache):
    return sorted((cache / "datasets").glob("*.json"))


def test_cache_is_keyed_on_content_and_options(tmp_path, cache, monkeypatch):
    path = write_csv(tmp_path / "few.csv", perov_rows()[:20])
    first = load_dataset(path, workers=1)
    files = _cache_entries(cache)
    assert len(files) == 1 and files[0].with_suffix(".npz").is_file()
    monkeypatch.setattr(data_module, "_build", lambda *a, **k: pytest.fail("cache not used"))
    again = load_dataset(path, workers=1)
    assert [r.material_id for r in again.records] == [r.material_id for r in first.records]
    for a, b in zip(again.records, first.records):
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
        assert a.properties == b.properties and a.source == b.source
    assert again.report.to_dict() == first.report.to_dict()
    monkeypatch.undo()
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(cache))
    load_dataset(path, workers=1, niggli=False)
    load_dataset(path, workers=1, max_atoms=5)
    assert len(_cache_entries(cache)) == 3
    write_csv(path, perov_rows()[:21])  # new content -> new key
    assert len(load_dataset(path, workers=1)) == 21
    assert len(_cache_entries(cache)) == 4
    load_dataset(path, workers=1, cache=False, niggli=False)
    assert len(_cache_entries(cache)) == 4
    files[0].with_suffix(".npz").write_bytes(b"damaged")  # a damaged entry is rebuilt, not an error
    write_csv(path, perov_rows()[:20])
    assert len(load_dataset(path, workers=1)) == 20


class _Planted:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_in_the_cache_is_never_loaded(tmp_path, cache):
    """The cache folder may be shared storage: a file planted there must not run code when read."""
    import pickle

    path = write_csv(tmp_path / "few.csv", perov_rows()[:5])
    load_dataset(path, workers=1)
    (entry,) = _cache_entries(cache)
    marker = tmp_path / "code_ran"
    entry.with_suffix(".pkl").write_bytes(pickle.dumps(_Planted(marker)))   # where format 2 kept its pickle
    objects = np.empty(1, dtype=object)
    objects[0] = _Planted(marker)
    with open(entry.with_suffix(".npz"), "wb") as fh:      # object arrays in an .npz unpickle when read
        np.savez(fh, material_id=objects)
    reloaded = load_dataset(path, workers=1)
    assert not marker.exists()
    assert len(reloaded) == 5
    with np.load(entry.with_suffix(".npz"), allow_pickle=False) as arrays:   # rebuilt as plain arrays
        assert arrays["material_id"].dtype.kind == "U"


def test_dataset_resolution_and_clear_errors(tmp_path, monkeypatch, cache):
    data_dir = tmp_path / "data"
    (data_dir / "perov_5").mkdir(parents=True)
    write_csv(data_dir / "perov_5" / "test.csv", perov_rows()[:10])
    ds = load_dataset("perov_5:test", data_dir=data_dir, workers=1)
    assert len(ds) == 10 and "3785" in ds.report.notes[0]
    monkeypatch.setenv("GENLOWDIM_DATA_DIR", str(data_dir))
    assert len(load_dataset("perov_5", "test", workers=1)) == 10
    (data_dir / "carbon_24").mkdir()
    with pytest.raises(FileNotFoundError, match=r"carbon_24/train\.csv\.gz.*DIR/carbon_24/\{train,val,test\}"):
        load_dataset("carbon_24", "train")
    with pytest.raises(ValueError, match="give a split"):
        load_dataset("perov_5")
    with pytest.raises(ValueError, match="split must be one of"):
        parse_dataset_ref("perov_5:trian")
    with pytest.raises(FileNotFoundError, match="not a registered dataset"):
        load_dataset(tmp_path / "nowhere.csv")
    assert parse_dataset_ref("mp_20:val") == ("mp_20", "val")
    assert parse_dataset_ref(str(data_dir)) == (str(data_dir), None)


def _csv_rows_and_columns(path: Path) -> tuple[int, list[str]]:
    with gzip.open(path, "rt") as fh:
        reader = csv.DictReader(fh)
        return sum(1 for _ in reader), list(reader.fieldnames)


def test_registry_agrees_with_the_shipped_files(perov_test):
    dataset, _ = perov_test
    for spec in (s for s in DATASETS.values() if s.shipped):
        for split, expected in spec.splits.items():
            rows, columns = _csv_rows_and_columns(PEROV.parent / spec.name / f"{split}.csv.gz")
            assert rows == expected, (spec.name, split)
            assert spec.property in columns and set(spec.properties) <= set(columns) and "cif" in columns
    for spec in DATASETS.values():   # "shipped" says whether the files are in the repository
        assert spec.shipped == (PEROV.parent / spec.name / "train.csv.gz").is_file(), spec.name
    # max_atoms is the largest cell of the split parsed above; every spec can be looked up by name
    assert get_spec("perov_5").max_atoms == max(r.num_atoms for r in dataset.records)
    assert all(get_spec(name) is spec for name, spec in DATASETS.items())
    for spec in DATASETS.values():
        lo, hi = spec.cov_thresholds   # (structure, composition) fingerprint distance cut-offs
        assert 0 < lo < hi


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(UnknownDatasetError) as info:
        get_spec("perov5")
    assert str(info.value).startswith(f"unknown dataset 'perov5'; known datasets: {', '.join(sorted(DATASETS))}")
    with pytest.raises(KeyError):
        get_spec("nope")


def test_cli_info_and_check(perov_test, tmp_path, small_structures, monkeypatch, capsys):
    _, folder = perov_test
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(folder))
    assert main(["data", "info", "perov_5", "--split", "test", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["splits"]["test"]
    assert info["crystals"] == 3785 and info["atoms_per_cell"]["histogram"] == {"5": 3785}
    assert sum(info["elements"].values()) == 5 * 3785
    assert main(["data", "info", "perov_5:test"]) == 0
    table = capsys.readouterr().out
    assert "3785" in table and "alpha" in table and "heat_ref" in table
    bad = bad_rows_csv(tmp_path / "mixed.csv", small_structures)
    # skipped rows are a problem the check found: exit 1, with or without the older --strict
    assert main(["data", "check", str(bad), "--no-cache", "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "4 of 8 rows loaded" in captured.out and "4 of 8 rows skipped" in captured.err
    assert main(["data", "check", str(bad), "--no-cache", "--workers", "1", "--strict",
                 "--max-atoms", "5", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"]["too many atoms"] == 1
    assert main(["data", "info", "perov6"]) == 2
    assert "unknown dataset 'perov6'" in capsys.readouterr().err
    assert main(["data", "info", "mp_20", "--split", "val"]) == 2
    assert "mp_20/{train,val,test}" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "missing.cif")]) == 2
    assert "no such file" in capsys.readouterr().err
