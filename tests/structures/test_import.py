"""``genlowdim data import``: every dropped row named with its reason, a split reproducible from the seed,
the user's own split column, property columns, each source kind, and the folder read back for training."""
from __future__ import annotations

import csv
import gzip
import io
import json
import pytest
from pymatgen.io.cif import CifWriter

from genlowdim.cli import main
from genlowdim.structures.importing import (REPORT_NAME, ImportSettings, MatchTolerances, assign_splits,
                                            find_duplicates, import_dataset)
from tests.structures._import_data import BROKEN, dataset_rows, write_source_folder


def _rows(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode())))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifs")
    good = write_source_folder(folder)
    return folder, good


def test_every_dropped_file_is_named_with_its_reason(source, tmp_path):
    folder, good = source
    result = import_dataset(folder, tmp_path, ImportSettings(name="mine"))
    assert {row.material_id: row.reason for row in result.dropped} == BROKEN
    assert next(r for r in result.dropped if r.reason == "duplicate").duplicate_of == "perov_0"
    written = {r["material_id"] for split in ("train", "val", "test")
               for r in _rows(tmp_path / "mine" / f"{split}.csv.gz")}
    assert written == set(good)                                # nothing else dropped, nothing silently
    assert result.total == len(good) + len(BROKEN) == sum(result.splits.values()) + len(result.dropped)
    report = json.loads((tmp_path / "mine" / REPORT_NAME).read_text())
    assert report["dropped"] == {reason: 1 for reason in BROKEN.values()}
    assert report["settings"]["tolerances"] == {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0}
    assert report["max_atoms_in_data"] == max(len(s) for s in good.values())
    assert "garbage" in result.summary() and "supercell_60_atoms" in result.summary()


def test_the_split_is_reproducible_from_the_seed(source, tmp_path):
    folder, _ = source
    files = {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        import_dataset(folder, tmp_path / run, ImportSettings(name="d", fractions=(0.6, 0.2, 0.2), seed=seed))
        files[run] = [(tmp_path / run / "d" / f"{s}.csv.gz").read_bytes() for s in ("train", "val", "test")]
    assert files["a"] == files["b"]                           # same seed: the same bytes
    assert files["a"] != files["c"]
    sizes = [len(_rows(tmp_path / "a" / "d" / f"{s}.csv.gz")) for s in ("train", "val", "test")]
    assert sizes == [6, 2, 2]                                  # 10 rows written, 0.6/0.2/0.2


def test_assign_splits_sizes_and_small_sets():
    labels = assign_splits(100, (0.8, 0.1, 0.1), seed=3)
    assert [labels.count(s) for s in ("train", "val", "test")] == [80, 10, 10]
    assert labels == assign_splits(100, (0.8, 0.1, 0.1), seed=3)
    assert sorted(assign_splits(3, (0.8, 0.1, 0.1), seed=0)) == ["test", "train", "val"]
    assert assign_splits(4, (1.0, 0.0, 0.0), seed=0) == ["train"] * 4


def test_duplicates_match_supercells_and_shifts_but_not_other_crystals():
    (_, a), (_, b) = dataset_rows("perov_5", "test", 2)
    shifted = a * (1, 1, 2)
    shifted.translate_sites(list(range(len(shifted))), [0.3, 0.0, 0.1])
    assert find_duplicates([a, b, shifted], MatchTolerances()) == {2: 0}


def _csv_source(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["material_id", "cif", "energy", "fold"])
        writer.writeheader()
        writer.writerows(rows)


def test_csv_with_split_column_and_property(tmp_path):
    perov = dataset_rows("perov_5", "val", 4)
    cif = {mid: str(CifWriter(s)) for mid, s in perov}
    ids = [mid for mid, _ in perov]
    rows = [{"material_id": ids[0], "cif": cif[ids[0]], "energy": "0.5", "fold": "test"},
            {"material_id": "copy", "cif": cif[ids[0]], "energy": "0.4", "fold": "train"},   # same crystal
            {"material_id": ids[1], "cif": cif[ids[1]], "energy": "nan", "fold": "val"},
            {"material_id": ids[2], "cif": cif[ids[2]], "energy": "1.5", "fold": "holdout"},
            {"material_id": ids[3], "cif": cif[ids[3]], "energy": "2.5", "fold": "validation"}]
    _csv_source(tmp_path / "in.csv", rows)
    result = import_dataset(tmp_path / "in.csv", tmp_path / "out",
                            ImportSettings(name="d", split_column="fold", property="energy"))
    reasons = {row.material_id: row.reason for row in result.dropped}
    # the train copy is kept although the test row comes first in the file
    assert reasons == {ids[0]: "duplicate", ids[1]: "non-finite", ids[2]: "no split"}
    assert result.splits == {"train": 1, "val": 1, "test": 0}
    train = _rows(tmp_path / "out" / "d" / "train.csv.gz")
    assert [(r["material_id"], float(r["energy"])) for r in train] == [("copy", 0.4)]


def test_extxyz_and_list_file_sources(source, tmp_path):
    from genlowdim.structures.io import write_extxyz

    folder, good = source
    names = sorted(good)
    write_extxyz([good[n] for n in names], tmp_path / "all.extxyz", ids=names,
                 info={"energy": [float(k) for k in range(len(names))]})
    result = import_dataset(tmp_path / "all.extxyz", tmp_path / "x", ImportSettings(name="d", property="energy"))
    assert sum(result.splits.values()) == len(good) and not result.dropped
    (tmp_path / "files.txt").write_text("# my crystals\n" + "\n".join(
        str(folder / f"{n}.cif") for n in ["perov_1", "carbon_0"]) + "\nmissing.cif\n")
    result = import_dataset(tmp_path / "files.txt", tmp_path / "y", ImportSettings(name="d"))
    assert sum(result.splits.values()) == 2
    assert [(r.material_id, r.reason) for r in result.dropped] == [("missing", "unparseable")]


def test_bad_settings_and_an_existing_dataset_are_refused(source, tmp_path):
    folder, _ = source
    with pytest.raises(ValueError, match="summing to 1"):
        ImportSettings(name="d", fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="plain folder name"):
        ImportSettings(name="a/b")
    import_dataset(folder, tmp_path, ImportSettings(name="d", max_atoms=5))
    with pytest.raises(FileExistsError, match="--overwrite"):
        import_dataset(folder, tmp_path, ImportSettings(name="d"))
    result = import_dataset(folder, tmp_path, ImportSettings(name="d", max_atoms=5), overwrite=True)
    # the 4 carbon cells (6+ atoms), the 60-atom supercell and the 10-atom copy (sizes are checked first)
    assert result.dropped_counts()["too many atoms"] == 6


def test_cli_import_info_and_the_training_view(source, tmp_path, capsys):
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.crystal.cdvae.training import load_split, resolve_max_atoms

    folder, good = source
    assert main(["data", "import", str(folder), "--name", "mine", "--out", str(tmp_path),
                 "--split", "0.5,0.25,0.25", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 dropped" in out and "half_occupied (disordered)" in out
    assert main(["data", "info", "mine", "--data-dir", str(tmp_path), "--no-cache", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sum(s["crystals"] for s in info["splits"].values()) == len(good)
    assert main(["data", "import", str(folder), "--name", "x", "--out", str(tmp_path), "--split", "1,1"]) == 2
    cfg = load_crystal_config("configs/crystal/tiny.yaml",
                              ["data.dataset=mine", f"data.data_dir={tmp_path}", "data.max_atoms=null"])
    assert resolve_max_atoms(cfg) == max(len(s) for s in good.values())
    assert len(load_split(cfg, "train")) == info["splits"]["train"]["crystals"] == 6   # 10 - round(2.5) - round(2.5)


def test_cli_flags_reach_the_import(source, tmp_path, capsys):
    folder, good = source
    assert main(["data", "import", str(folder), "--name", "d", "--out", str(tmp_path), "--no-dedupe",
                 "--max-atoms", "10", "--stol", "0.1", "--ltol", "0.15", "--angle-tol", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["tolerances"] == {"ltol": 0.15, "stol": 0.1, "angle_tol": 3.0}
    assert report["settings"]["max_atoms"] == 10 and report["settings"]["dedupe"] is False
    # no duplicate search: the 10-atom copy of perov_0 is kept; the 60-atom cell still goes
    assert report["written"] == len(good) + 1 and "duplicate" not in report["dropped"]
    assert main(["data", "import", str(folder), "--name", "d", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_data_dir_on_train_is_for_crystal_configs(tmp_path, capsys):
    assert main(["train", "--config", "configs/lowrank/molrg.yaml", "--out", str(tmp_path / "run"),
                 "--data-dir", str(tmp_path)]) == 2
    assert "--data-dir applies to crystal configs" in capsys.readouterr().err


def test_the_imported_property_is_the_training_target(tmp_path, monkeypatch):
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.crystal.cdvae.training import check_property, load_split

    perov = dataset_rows("perov_5", "val", 3)
    _csv_source(tmp_path / "in.csv", [{"material_id": mid, "cif": str(CifWriter(s)), "energy": str(k + 0.5),
                                       "fold": "train"} for k, (mid, s) in enumerate(perov)])
    import_dataset(tmp_path / "in.csv", tmp_path / "data",
                   ImportSettings(name="d", split_column="fold", property="energy", dedupe=False))
    monkeypatch.setenv("GENLOWDIM_DATA_DIR", str(tmp_path / "data"))   # NAME found without data.data_dir
    cfg = load_crystal_config("configs/crystal/tiny.yaml", ["data.dataset=d", "data.max_atoms=null"])
    items = load_split(cfg, "train")
    assert [float(d.y) for d in items] == [0.5, 1.5, 2.5]
    check_property(cfg, items)   # tiny.yaml's property head has its target


@pytest.mark.parametrize("kind, words", [("csv without cif", "needs a 'cif' column"),
                                         ("missing", "no such file or folder"),
                                         ("split column on a folder", "needs a CSV source"),
                                         ("empty folder", "holds no files"),
                                         ("all dropped", "nothing to import")])
def test_bad_sources_are_one_line_errors(kind, words, tmp_path, capsys):
    (tmp_path / "nocif.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.cif").write_text("garbage\n")
    source, extra = {"csv without cif": ("nocif.csv", []), "missing": ("nowhere", []),
                     "split column on a folder": ("junk", ["--split-column", "fold"]),
                     "empty folder": ("empty", []), "all dropped": ("junk", [])}[kind]
    assert main(["data", "import", str(tmp_path / source), "--name", "d", "--out", str(tmp_path / "o")]
                + extra) == 2
    assert words in capsys.readouterr().err
