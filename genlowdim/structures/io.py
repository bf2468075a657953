"""Structure input: folders of CIFs, single/multi-block CIF, extxyz (ASE), CDVAE-style CSV, genlowdim JSON.

Readers accept ``.gz`` transparently. They first list *entries* (one per CSV row, CIF block, extxyz frame
or JSON item, with an id and a ``"file:index"`` source), then turn entries into pymatgen ``Structure``s,
so a loader can parse in parallel and report bad rows by file and row (``genlowdim.structures.datasets``).
Failures raise ``StructureReadError`` naming the file and the row/block/frame. Plain P1 CIFs (all CDVAE
data) take a fast path that builds the ``Structure`` ``CifParser`` would (coordinates wrapped into [0, 1),
sites sorted by electronegativity; checked against it in the tests); anything else (symmetry operations,
partial occupancy, oxidation states, uncertainties, quoting) goes through ``CifParser``. The writers
live in :mod:`genlowdim.structures.writers` and are importable from here as well.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from genlowdim.structures.writers import JSON_FORMAT, write_cif, write_extxyz, write_json

__all__ = ["StructureReadError", "Entry", "read_entries", "entry_to_structure", "read_structures",
           "read_each_structure", "check_finite", "parse_cif", "parse_p1_cif", "P1Cell", "split_cif_blocks",
           "write_cif", "write_extxyz", "write_json", "read_json", "JSON_FORMAT"]

CIF_SUFFIXES = (".cif", ".mcif")
EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
# CSV columns that are bookkeeping, not material properties
_NON_PROPERTY_COLUMNS = {"", "Unnamed: 0", "material_id", "cif", "cif.conv", "formula"}
csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))


class StructureReadError(ValueError):
    """A file, or one row/block/frame of it, cannot be turned into a structure. ``reason`` is a short
    category ("unreadable file", "unparsable structure", "unknown element") used by load reports."""

    def __init__(self, message: str, reason: str = "unparsable structure"):
        super().__init__(message)
        self.reason = reason


class Entry(NamedTuple):
    """One structure-to-be: ``kind`` says what ``payload`` is ("cif" text, "dict" from
    ``Structure.as_dict``, or a ready "structure"); ``source`` is ``"file:index"``."""

    material_id: str
    source: str
    kind: str
    payload: Any
    properties: dict


def _base_suffix(path: Path) -> str:  # "a.cif.gz" -> ".cif"
    return Path(path.name[:-3] if path.name.lower().endswith(".gz") else path.name).suffix.lower()


def _stem(path: Path) -> str:  # "a.cif.gz" -> "a"
    return Path(path.name[:-3] if path.name.lower().endswith(".gz") else path.name).stem


def _read_text(path: Path) -> str:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read()
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise StructureReadError(f"{path}: cannot read file ({err})", "unreadable file") from err


# ---------------------------------------------------------------- CIF
_BLOCK_START = re.compile(r"^data_(\S*)", re.MULTILINE | re.IGNORECASE)
_SYMBOL = re.compile(r"^[A-Z][a-z]?$")
_IDENTITY_OPS = {"x,y,z", "'x,y,z'", "+x,+y,+z", "'+x,+y,+z'"}
_CELL_TAGS = ["_cell_length_a", "_cell_length_b", "_cell_length_c",
              "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma"]


def split_cif_blocks(text: str) -> list[tuple[str, str]]:
    """Split CIF text into ``(block name, block text)`` at each line starting with ``data_``."""
    starts = [(m.start(), m.group(1)) for m in _BLOCK_START.finditer(text)]
    return [(name, text[pos:(starts[k + 1][0] if k + 1 < len(starts) else len(text))])
            for k, (pos, name) in enumerate(starts)]


class P1Cell(NamedTuple):
    """Contents of a plain P1 CIF: lattice parameters (a, b, c Å, alpha, beta, gamma degrees), element
    symbols, fractional coordinates (N, 3) wrapped into [0, 1), site labels (or None)."""

    params: tuple
    symbols: list
    frac_coords: np.ndarray
    labels: list | None


def parse_p1_cif(text: str) -> P1Cell | None:
    """Read a plain P1 CIF (no symmetry, full occupancy, element symbols, no uncertainties) into arrays;
    None when the CIF is not that simple (then use ``parse_cif``). Site order is the file's order."""
    tags: dict[str, str] = {}
    loops: list[tuple[list[str], list[list[str]]]] = []
    lines = iter(text.splitlines())
    line = next(lines, None)
    while line is not None:
        stripped = line.strip()
        if stripped.startswith(";"):
            return None  # multi-line text fields: leave them to CifParser
        if stripped.lower() == "loop_":
            headers, rows = [], []
            line = next(lines, None)
            while line is not None and line.strip().startswith("_"):
                headers.append(line.strip().lower())
                line = next(lines, None)
            while line is not None and line.strip() and not line.strip().startswith(("_", "loop_", "data_")):
                rows.append(line.strip())
                line = next(lines, None)
            loops.append((headers, rows))
            continue
        if stripped.startswith("_"):
            key, _, value = stripped.partition(" ")
            tags[key.lower()] = value.strip()
        line = next(lines, None)
    return _structure_from_p1_parts(tags, loops)


def _p1_symmetry_ok(tags: dict[str, str], loops) -> bool:
    group = tags.get("_symmetry_space_group_name_h-m", tags.get("_space_group_name_h-m_alt", "'P 1'"))
    if group.strip("'\"").replace(" ", "") != "P1":
        return False
    for headers, rows in loops:
        if any("_symmetry_equiv_pos_as_xyz" in h or "_space_group_symop_operation_xyz" in h for h in headers):
            ops = [row.split(None, 1)[-1].replace(" ", "") if len(headers) > 1 else row.replace(" ", "")
                   for row in rows]
            if len(ops) != 1 or ops[0].lower() not in _IDENTITY_OPS:
                return False
    return True


def _structure_from_p1_parts(tags: dict[str, str], loops) -> P1Cell | None:
    try:
        params = [float(tags[t]) for t in _CELL_TAGS]
    except (KeyError, ValueError):
        return None
    if not _p1_symmetry_ok(tags, loops):
        return None
    atoms = next(((h, r) for h, r in loops if "_atom_site_fract_x" in h), None)
    if atoms is None or not atoms[1]:
        return None
    headers, rows = atoms
    col = {h: k for k, h in enumerate(headers)}
    species_col = col.get("_atom_site_type_symbol")
    if species_col is None or any(q in row for row in rows for q in "'\"("):
        return None
    table = [row.split() for row in rows]
    if any(len(cells) != len(headers) for cells in table):
        return None
    species = [cells[species_col] for cells in table]
    if not all(_SYMBOL.match(s) and Element.is_valid_symbol(s) for s in species):
        return None
    try:
        coords = np.array([[float(cells[col[f"_atom_site_fract_{a}"]]) for a in "xyz"] for cells in table])
        occupancy = [float(cells[col["_atom_site_occupancy"]]) for cells in table] \
            if "_atom_site_occupancy" in col else [1.0]
    except ValueError:
        return None
    if any(abs(o - 1.0) > 1e-6 for o in occupancy) or _has_overlaps(coords):
        return None
    labels = [cells[col["_atom_site_label"]] for cells in table] if "_atom_site_label" in col else None
    return P1Cell(tuple(params), species, np.mod(coords, 1.0), labels)


def _has_overlaps(coords: np.ndarray, tol: float = 1e-3) -> bool:
    """Sites closer than ``tol`` in fractional min-image distance (CifParser would merge them)."""
    diff = coords[:, None, :] - coords[None, :, :]
    diff -= np.round(diff)
    close = (np.abs(diff) < tol).all(-1)
    return bool(close.sum() > len(coords))


def parse_cif(text: str, where: str = "<string>") -> Structure:
    """One CIF block -> ``Structure`` (fast P1 path, else pymatgen ``CifParser``; see module docstring)."""
    cell = parse_p1_cif(text)
    if cell is not None:  # built as CifParser builds it: sites sorted by electronegativity
        check_finite(np.asarray(cell.params), cell.frac_coords, where)
        return Structure(Lattice.from_parameters(*cell.params), cell.symbols, cell.frac_coords,
                         labels=cell.labels).get_sorted_structure()
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structures = CifParser.from_str(text).parse_structures(primitive=False)
    except Exception as err:  # noqa: BLE001 - CifParser raises many kinds of errors
        raise StructureReadError(f"{where}: unparsable CIF ({type(err).__name__}: {err})") from err
    if len(structures) != 1:
        raise StructureReadError(f"{where}: expected one structure in the CIF block, got {len(structures)}")
    return structures[0]


def _cif_entries(path: Path) -> list[Entry]:
    blocks = split_cif_blocks(_read_text(path))
    if not blocks:
        raise StructureReadError(f"{path}: no 'data_' block found; is this a CIF file?")
    single = len(blocks) == 1
    return [Entry(_stem(path) if single else (name or f"{_stem(path)}:{k}"), f"{path}:{k}", "cif", text, {})
            for k, (name, text) in enumerate(blocks)]


# ---------------------------------------------------------------- CSV
def _csv_entries(path: Path) -> list[Entry]:
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    if reader.fieldnames is None or "cif" not in reader.fieldnames:
        raise StructureReadError(f"{path}: CSV needs a 'cif' column (CDVAE format); "
                                 f"found columns {reader.fieldnames}")
    entries = []
    for k, row in enumerate(reader):
        numbers = {key: _as_float(value) for key, value in row.items() if key not in _NON_PROPERTY_COLUMNS}
        properties = {key: value for key, value in numbers.items() if key is not None and value is not None}
        material_id = (row.get("material_id") or "").strip() or str(k)
        entries.append(Entry(material_id, f"{path}:{k}", "cif", row["cif"], properties))
    return entries


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- extxyz
def _extxyz_entries(path: Path) -> list[Entry]:
    import ase.io   # only extxyz needs ASE, whose import takes ~0.5 s

    try:
        frames = ase.io.read(io.StringIO(_read_text(path)), index=":", format="extxyz")
    except Exception as err:  # noqa: BLE001
        raise StructureReadError(f"{path}: unreadable extxyz ({type(err).__name__}: {err})") from err
    entries = []
    for k, atoms in enumerate(frames):
        try:
            entries.append(_frame_entry(atoms, path, k))
        except StructureReadError as err:   # this frame only: the file's other frames are still read
            entries.append(Entry(f"{_stem(path)}:{k}", f"{path}:{k}", "error", err, {}))
    return entries


def _frame_entry(atoms, path: Path, k: int) -> Entry:
    from pymatgen.io.ase import AseAtomsAdaptor

    where = f"{path}:{k}"
    check_finite(atoms.cell.array, atoms.positions, f"{where}: frame {k}")
    if not atoms.pbc.all() or abs(atoms.cell.volume) < 1e-8:
        raise StructureReadError(f"{where}: frame {k} is not a periodic crystal (pbc {atoms.pbc.tolist()}, "
                                 f"cell volume {atoms.cell.volume:.3g} Å³)")
    info = dict(atoms.info)
    if atoms.calc is not None:  # ASE moves energy/stress/... of a frame into a calculator
        info.update(atoms.calc.results)
    material_id = str(info.pop("material_id", f"{_stem(path)}:{k}"))
    properties = {key: float(v) for key, v in info.items()
                  if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
    atoms.info, atoms.calc = {}, None
    return Entry(material_id, where, "structure", AseAtomsAdaptor.get_structure(atoms), properties)


# ---------------------------------------------------------------- JSON
def _json_entries(path: Path) -> list[Entry]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise StructureReadError(f"{path}: invalid JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        raise StructureReadError(f"{path}: not a genlowdim structure file (expected "
                                 f"'format': '{JSON_FORMAT}', as written by genlowdim.structures.io.write_json)")
    return [Entry(str(item.get("material_id", k)), f"{path}:{k}", "dict", item.get("structure"),
                  dict(item.get("properties") or {})) for k, item in enumerate(data.get("structures", []))]


def _folder_file_entries(path: Path) -> list[Entry]:
    """One CIF file of a folder; a file that cannot be read becomes one ``"error"`` entry carrying its
    error, so that it is reported by name and reason and the folder's other files are still read."""
    try:
        return _cif_entries(path)
    except StructureReadError as err:
        return [Entry(_stem(path), str(path), "error", err, {})]


def read_entries(path: str | Path) -> list[Entry]:
    """List the entries of a structure file or of a folder of CIF files (sorted by file name). A folder's
    unreadable file, or an extxyz frame that is no usable crystal, is an entry of kind ``"error"`` whose
    conversion raises its error (:func:`entry_to_structure`), so that the others are still read."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _base_suffix(p) in CIF_SUFFIXES)
        if not files:
            raise StructureReadError(f"{path}: folder holds no .cif or .cif.gz files")
        return [entry for f in files for entry in _folder_file_entries(f)]
    if not path.exists():
        raise StructureReadError(f"{path}: no such file or folder")
    suffix = _base_suffix(path)
    readers = {".csv": _csv_entries, ".json": _json_entries}
    readers.update({s: _cif_entries for s in CIF_SUFFIXES})
    readers.update({s: _extxyz_entries for s in EXTXYZ_SUFFIXES})
    if suffix not in readers:
        raise StructureReadError(f"{path}: unknown structure format {suffix!r}; expected a folder of CIFs or "
                                 f"one of {sorted(readers)} (optionally .gz)")
    return readers[suffix](path)


def entry_to_structure(entry: Entry) -> Structure:
    """Turn one entry into a ``Structure``; raises ``StructureReadError`` naming ``entry.source``
    (also for species that are no chemical element, e.g. a CIF's unknown symbol "Xx", and for non-finite
    lattice or coordinate values)."""
    if entry.kind == "error":   # a folder's file, or an extxyz frame, that could not be read
        raise entry.payload
    if entry.kind == "structure":
        structure = entry.payload
    elif entry.kind == "cif":
        if not isinstance(entry.payload, str) or not entry.payload.strip():
            raise StructureReadError(f"{entry.source}: empty CIF")
        structure = parse_cif(entry.payload, entry.source)
    else:
        try:
            structure = Structure.from_dict(entry.payload)
        except Exception as err:  # noqa: BLE001
            raise StructureReadError(f"{entry.source}: not a pymatgen structure dict "
                                     f"({type(err).__name__}: {err})") from err
    _check_elements(structure, entry.source)
    check_finite(structure.lattice.matrix, structure.frac_coords, entry.source)
    return structure


def check_finite(lattice: np.ndarray, coords: np.ndarray, where: str) -> None:
    """StructureReadError ("non-finite value") naming the first NaN/inf of a lattice (3x3 matrix, or the six
    parameters a, b, c, alpha, beta, gamma) or of a site's coordinates ``coords: (N, 3)``."""
    lattice, coords = np.asarray(lattice, dtype=float), np.asarray(coords, dtype=float).reshape(-1, 3)
    if not np.isfinite(lattice).all():
        what = (f"lattice parameters {np.round(lattice, 4).tolist()}" if lattice.shape == (6,)
                else f"lattice vectors {np.round(lattice, 4).tolist()}")
        raise StructureReadError(f"{where}: non-finite {what}", "non-finite value")
    bad = np.nonzero(~np.isfinite(coords).all(axis=1))[0]
    if len(bad):
        raise StructureReadError(f"{where}: site {bad[0]} has non-finite coordinates {coords[bad[0]].tolist()}"
                                 f"{f' ({len(bad)} sites in all)' if len(bad) > 1 else ''}", "non-finite value")


def _check_elements(structure: Structure, where: str) -> None:
    from pymatgen.core import DummySpecies

    bad = [(k, sp) for k, site in enumerate(structure) for sp in site.species if isinstance(sp, DummySpecies)]
    if bad:
        raise StructureReadError(f"{where}: site {bad[0][0]} has unknown element {str(bad[0][1])!r}",
                                 "unknown element")


def read_structures(path: str | Path) -> list[tuple[str, Structure]]:
    """``[(id, Structure), ...]`` from a CIF folder, (multi-block) CIF, extxyz, CDVAE CSV or genlowdim
    JSON, optionally gzipped. Raises ``StructureReadError`` at the first bad row/block/frame."""
    return [(entry.material_id, entry_to_structure(entry)) for entry in read_entries(path)]


def read_each_structure(path: str | Path) -> tuple[list[tuple[str, Structure]], list[StructureReadError]]:
    """Like :func:`read_structures`, but every file, row, block and frame is read: returns the good ones as
    ``(id, Structure)`` and each bad one's error (its message names the file and row, ``reason`` says why).
    A path that cannot be listed at all (missing, unknown format, an unreadable single file) still raises."""
    good, bad = [], []
    for entry in read_entries(path):
        try:
            good.append((entry.material_id, entry_to_structure(entry)))
        except StructureReadError as err:
            bad.append(err)
    return good, bad


def read_json(path: str | Path) -> list[tuple[str, Structure]]:
    """Structures from a file written by :func:`write_json` (``read_structures`` reads it too)."""
    return [(e.material_id, entry_to_structure(e)) for e in _json_entries(Path(path))]
