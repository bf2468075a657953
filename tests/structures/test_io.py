"""Structure I/O: round trips through every format, files readable by pymatgen and ASE, the fast P1 CIF
path against pymatgen's CifParser, and errors that name the file and row."""
from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser, CifWriter

from genlowdim.structures.io import (StructureReadError, parse_cif, parse_p1_cif, read_each_structure, read_entries,
                                    read_json, read_structures, write_cif, write_extxyz, write_json)

PEROV_TEST = Path(__file__).resolve().parents[2] / "datasets" / "perov_5" / "test.csv.gz"


def assert_same_structure(a: Structure, b: Structure, atol=1e-6):
    """Same lattice parameters and the same multiset of (species, wrapped fractional coordinates)."""
    np.testing.assert_allclose(a.lattice.parameters, b.lattice.parameters, atol=atol)
    assert len(a) == len(b)

    def sites(s):
        return sorted((site.species_string, *np.round(np.mod(site.frac_coords, 1.0) % 1.0, 5)) for site in s)

    for x, y in zip(sites(a), sites(b)):
        assert x[0] == y[0]
        diff = np.array(x[1:]) - np.array(y[1:])
        assert np.all(np.abs(diff - np.round(diff)) < 1e-4)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_cif_folder_round_trip_and_pymatgen_ase_read_it(tmp_path, small_structures, suffix):
    names, structures = list(small_structures), list(small_structures.values())
    paths = write_cif(structures, tmp_path / "cifs", ids=names)
    assert [p.stem for p in paths] == names
    back = dict(read_structures(tmp_path / "cifs"))
    for name, s in small_structures.items():
        assert_same_structure(back[name], s)
        assert_same_structure(Structure.from_file(tmp_path / "cifs" / f"{name}.cif"), s)
        atoms = ase.io.read(tmp_path / "cifs" / f"{name}.cif")
        assert sorted(atoms.get_chemical_symbols()) == sorted(str(x) for x in s.species)
        np.testing.assert_allclose(atoms.cell.cellpar(), s.lattice.parameters, atol=1e-6)
    if suffix:
        gz = tmp_path / "one.cif.gz"
        write_cif(structures[:1], gz, ids=names[:1], multiblock=True)
        assert gz.read_bytes()[:2] == b"\x1f\x8b"
        ((name, s),) = read_structures(gz)
        assert name == "one" and len(s) == len(structures[0])


def test_multiblock_cif_is_read_by_us_pymatgen_and_ase(tmp_path, small_structures):
    names, structures = list(small_structures), list(small_structures.values())
    path = write_cif(structures, tmp_path / "all.cif", ids=names, multiblock=True)[0]
    back = read_structures(path)
    assert [n for n, _ in back] == names
    for (_, b), s in zip(back, structures):
        assert_same_structure(b, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = CifParser(path).parse_structures(primitive=False)
    assert len(parsed) == 3
    frames = ase.io.read(path, index=":")
    assert [len(f) for f in frames] == [len(s) for s in structures]


@pytest.mark.parametrize("name", ["frames.extxyz", "frames.extxyz.gz"])
def test_extxyz_round_trip_with_info_and_ase(tmp_path, small_structures, name):
    names, structures = list(small_structures), list(small_structures.values())
    path = write_extxyz(structures, tmp_path / name, ids=names, info={"energy": [-1.5, 2.0, 0.25]})
    entries = read_entries(path)
    assert [e.material_id for e in entries] == names
    assert [e.properties["energy"] for e in entries] == [-1.5, 2.0, 0.25]
    for (_, b), s in zip(read_structures(path), structures):
        assert_same_structure(b, s)
    if not name.endswith(".gz"):
        frames = ase.io.read(path, index=":")
        assert [f.info["material_id"] for f in frames] == names
        np.testing.assert_allclose(frames[2].cell.cellpar(), structures[2].lattice.parameters, atol=1e-8)


def test_json_round_trip_with_properties(tmp_path, small_structures):
    structures = list(small_structures.values())
    props = [{"heat_ref": 0.5}, {}, {"band_gap": 1.25}]
    for name in ("s.json", "s.json.gz"):
        path = write_json(structures, tmp_path / name, ids=["a", "b", "c"], properties=props)
        back = read_json(path)
        assert [n for n, _ in back] == ["a", "b", "c"]
        for (_, b), s in zip(back, structures):
            assert b == s  # JSON keeps the exact structure
        assert [e.properties for e in read_entries(path)] == props


def test_cdvae_csv_ids_properties_and_sources(tmp_path, small_structures):
    s = small_structures["SrTiO3"]
    import csv

    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["material_id", "cif", "formula", "heat_ref"])
        writer.writerow(["mp-1", str(CifWriter(s)), "SrTiO3", "0.75"])
        writer.writerow(["", str(CifWriter(s)), "SrTiO3", "nan"])
    entries = read_entries(path)
    assert [e.material_id for e in entries] == ["mp-1", "1"]
    assert [e.source for e in entries] == [f"{path}:0", f"{path}:1"]
    assert entries[0].properties == {"heat_ref": 0.75} and np.isnan(entries[1].properties["heat_ref"])
    assert_same_structure(read_structures(path)[1][1], s)


def test_fast_p1_path_equals_cifparser_on_cdvae_rows():
    entries = read_entries(PEROV_TEST)[:300]
    assert len(entries) == 300
    for entry in entries:
        assert parse_p1_cif(entry.payload) is not None  # the fast path is the one being checked
        ours = parse_cif(entry.payload)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = CifParser.from_str(entry.payload).parse_structures(primitive=False)[0]
        np.testing.assert_allclose(ours.lattice.matrix, ref.lattice.matrix, atol=1e-12)
        np.testing.assert_allclose(ours.frac_coords, ref.frac_coords, atol=1e-12)
        assert [str(x) for x in ours.species] == [str(x) for x in ref.species]


def test_symmetrised_cif_falls_back_to_cifparser():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    text = str(CifWriter(nacl, symprec=0.01))
    assert "_symmetry_equiv_pos_as_xyz" in text and parse_p1_cif(text) is None
    parsed = parse_cif(text)
    assert len(parsed) == 8 and parsed.composition.reduced_formula == "NaCl"
    partial = str(CifWriter(Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])))
    assert parse_p1_cif(partial) is None
    assert parse_cif(partial).composition.as_dict() == {"Fe": 0.5, "Co": 0.5}


def test_errors_name_file_and_row(tmp_path, small_structures):
    good = str(CifWriter(small_structures["NaCl"]))
    bad_cif = tmp_path / "two.cif"
    bad_cif.write_text(good + "\ndata_broken\n_cell_length_a 3\nloop_\n_atom_site_label\nXx\n")
    with pytest.raises(StructureReadError, match=r"two\.cif:1.*unparsable CIF"):
        read_structures(bad_cif)
    unknown = tmp_path / "unknown.cif"
    unknown.write_text(good.replace(" Na ", " Xx ").replace("Na0", "Xx0"))
    with pytest.raises(StructureReadError, match=r"unknown\.cif:0"):
        read_structures(unknown)
    no_cif = tmp_path / "plain.csv"
    no_cif.write_text("material_id,structure\n1,x\n")
    with pytest.raises(StructureReadError, match=r"plain\.csv: CSV needs a 'cif' column"):
        read_entries(no_cif)
    (tmp_path / "empty").mkdir()
    cases = [(tmp_path / "empty", "no .cif"), (tmp_path / "nothing.cif", "no such file"),
             (tmp_path / "x.poscar", "unknown structure format")]
    (tmp_path / "x.poscar").write_text("x")
    for path, message in cases:
        with pytest.raises(StructureReadError, match=message):
            read_entries(path)
    other_json = tmp_path / "other.json"
    other_json.write_text('{"structures": []}')
    with pytest.raises(StructureReadError, match="not a genlowdim structure file"):
        read_entries(other_json)
    molecule = tmp_path / "mol.xyz"
    molecule.write_text("2\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 0 0 0.74\n")
    with pytest.raises(StructureReadError, match=r"mol\.xyz:0: frame 0 is not a periodic crystal"):
        read_structures(molecule)   # listed as an entry that carries the error, raised on conversion
    truncated = tmp_path / "cut.cif.gz"
    truncated.write_bytes(gzip.compress(good.encode())[:40])
    with pytest.raises(StructureReadError, match=r"cut\.cif\.gz: cannot read file"):
        read_entries(truncated)


def test_writers_check_lengths(tmp_path, small_structures):
    structures = list(small_structures.values())
    with pytest.raises(ValueError, match="2 ids for 3 structures"):
        write_cif(structures, tmp_path / "x", ids=["a", "b"])
    with pytest.raises(ValueError, match=r"info\['e'\] has 1 values"):
        write_extxyz(structures, tmp_path / "x.extxyz", info={"e": [1.0]})


@pytest.mark.parametrize("tag, value, message", [
    ("_cell_length_a", "nan", "non-finite lattice parameters"),
    ("_cell_angle_beta", "inf", "non-finite lattice parameters"),
    (None, "nan", "site 0 has non-finite coordinates"),
])
def test_non_finite_cif_values_are_rejected_by_name(tmp_path, tag, value, message):
    """Both record builders (the fast P1 path and pymatgen's) and read_structures refuse NaN/inf."""
    from genlowdim.structures.datasets import load_records

    text = str(CifWriter(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]])))
    lines = text.splitlines()
    if tag is not None:
        lines = [f"{tag}   {value}" if line.startswith(tag) else line for line in lines]
    else:
        row = next(k for k, line in enumerate(lines) if line.split()[:1] == ["Na"])
        words = lines[row].split()
        lines[row] = "  ".join(words[:3] + [value] + words[4:])
    (tmp_path / "x.cif").write_text("\n".join(lines) + "\n")
    records, report, _, _ = load_records(tmp_path / "x.cif", cache=False, workers=1)
    assert not records and report.skipped == {"non-finite value": 1}
    assert message in report.examples[0]["message"]
    good, bad = read_each_structure(tmp_path)   # the folder: read, the bad file named
    assert not good and message in str(bad[0]) and "x.cif" in str(bad[0])
