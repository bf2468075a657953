"""Turn a user's structures into a CDVAE-format dataset: ``DIR/NAME/{train,val,test}.csv.gz`` (columns
``material_id``, ``cif`` (P1 CIF of the cell as given), optionally one property column) and
``DIR/NAME/import_report.json``.

Sources: a folder of structure files (CIF, or anything pymatgen's ``Structure.from_file`` or ASE reads), a
(multi-block) CIF, an extxyz, a CSV with a ``cif`` column, or a list file (``.txt``/``.list``: one path per
line, relative to the list file, ``#`` comments). Every row that is not written is reported by name and
reason (:data:`DROP_REASONS`); nothing is dropped silently.

Duplicates: a structure that pymatgen's ``StructureMatcher`` (tolerances in :class:`MatchTolerances`,
recorded in the report) matches to an *earlier* row is dropped, wherever the two would land, and the
report names the row it duplicates. "Earlier" is file order; with the user's own split column rows are
taken in split order train, val, test first, so a test copy of a training crystal is the one dropped.
The seeded split is drawn after every drop: the fractions hold on the rows written.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from genlowdim.runtime import atomic_write_bytes, atomic_write_text, progress
from genlowdim.structures.datasets import SPLITS
from genlowdim.structures.io import (CIF_SUFFIXES, EXTXYZ_SUFFIXES, Entry, StructureReadError,
                                     entry_to_structure, read_entries)

__all__ = ["MatchTolerances", "ImportSettings", "DroppedRow", "ImportResult", "import_dataset",
           "read_source", "find_duplicates", "assign_splits", "REPORT_NAME", "DROP_REASONS"]

REPORT_NAME = "import_report.json"
REPORT_FORMAT = "genlowdim.import"
DROP_REASONS = ("unparseable", "disordered", "non-finite", "too many atoms", "duplicate", "no split")
LIST_SUFFIXES = (".txt", ".list")
_READER_SUFFIXES = (*CIF_SUFFIXES, *EXTXYZ_SUFFIXES, ".csv", ".json")   # what io.read_entries reads
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "testing": "test"}


@dataclass(frozen=True)
class MatchTolerances:
    """``StructureMatcher`` settings of the duplicate search (pymatgen's defaults): ltol (fractional
    length tolerance), stol (site tolerance, in units of (V/N)^(1/3)), angle_tol (degrees); cells reduced
    to primitive and volumes scaled, as pymatgen does by default."""
    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0

    def matcher(self):
        from pymatgen.analysis.structure_matcher import StructureMatcher

        return StructureMatcher(ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol,
                                primitive_cell=True, scale=True)


@dataclass(frozen=True)
class ImportSettings:
    """What ``import_dataset`` does. fractions: (train, val, test), summing to 1, drawn with ``seed``
    unless ``split_column`` names the CSV column holding each row's split; property: a numeric column
    (CSV) or extxyz ``info`` key written as a column (rows without a finite value are dropped);
    max_atoms: larger cells are dropped (None: no limit); dedupe: search duplicates."""
    name: str
    fractions: tuple = (0.8, 0.1, 0.1)
    seed: int = 0
    split_column: str | None = None
    property: str | None = None
    max_atoms: int | None = 24
    dedupe: bool = True
    tolerances: MatchTolerances = field(default_factory=MatchTolerances)

    def __post_init__(self):
        if not self.name or any(c in self.name for c in "/\\:") or self.name.startswith("."):
            raise ValueError(f"dataset name {self.name!r}: use a plain folder name (no '/', ':' or leading '.')")
        fractions = tuple(float(f) for f in self.fractions)
        if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions {self.fractions}: need three non-negative numbers "
                             f"(train, val, test) summing to 1")
        object.__setattr__(self, "fractions", fractions)
        if self.max_atoms is not None and self.max_atoms < 1:
            raise ValueError(f"max_atoms {self.max_atoms}: must be at least 1")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["fractions"] = dict(zip(SPLITS, self.fractions))
        return out


@dataclass(frozen=True)
class DroppedRow:
    """A row that was not written: its id, ``file:index`` source, reason (one of DROP_REASONS) and message."""
    material_id: str
    source: str
    reason: str
    message: str
    duplicate_of: str | None = None


@dataclass
class ImportResult:
    """What an import did; ``to_dict()`` is the JSON report written beside the data."""
    settings: ImportSettings
    source: str
    folder: Path
    total: int
    splits: dict
    dropped: list
    stats: dict

    def dropped_counts(self) -> dict:
        counts = {}
        for row in self.dropped:
            counts[row.reason] = counts.get(row.reason, 0) + 1
        return counts

    def to_dict(self) -> dict:
        from pymatgen.core import __version__ as pymatgen_version

        from genlowdim import __version__

        return {"format": REPORT_FORMAT, "version": 1, "name": self.settings.name, "source": self.source,
                "settings": self.settings.to_dict(), "rows": self.total,
                "written": sum(self.splits.values()), "splits": dict(self.splits),
                "property": self.settings.property, "dropped": self.dropped_counts(),
                "dropped_rows": [asdict(row) for row in self.dropped], **self.stats,
                "versions": {"genlowdim": __version__, "pymatgen": pymatgen_version}}

    def summary(self, max_rows: int = 30) -> str:
        sizes = ", ".join(f"{k} {v}" for k, v in self.splits.items())
        lines = [f"{self.source}: {self.total} rows, {sum(self.splits.values())} written to {self.folder} "
                 f"({sizes}); {len(self.dropped)} dropped"]
        lines += [f"  {n:6d}  {reason}" for reason, n in sorted(self.dropped_counts().items())]
        lines += [f"  dropped {row.material_id} ({row.reason}): {row.message}" for row in self.dropped[:max_rows]]
        if len(self.dropped) > max_rows:
            lines.append(f"  ... {len(self.dropped) - max_rows} more in {self.folder / REPORT_NAME}")
        return "\n".join(lines)


# ---------------------------------------------------------------- reading
def _generic_entries(path: Path) -> list[Entry]:
    """Entries of a file that ``read_entries`` does not know: pymatgen ``Structure.from_file``, then ASE."""
    from pymatgen.core import Structure

    try:
        return [Entry(path.stem, str(path), "structure", Structure.from_file(path), {})]
    except Exception as pymatgen_err:  # noqa: BLE001 - then try ASE, and report both
        try:
            import ase.io
            from pymatgen.io.ase import AseAtomsAdaptor

            frames = ase.io.read(path, index=":")
            return [Entry(path.stem if len(frames) == 1 else f"{path.stem}:{k}", f"{path}:{k}", "structure",
                          AseAtomsAdaptor.get_structure(atoms), {}) for k, atoms in enumerate(frames)]
        except Exception as ase_err:  # noqa: BLE001
            raise StructureReadError(f"{path}: neither pymatgen ({type(pymatgen_err).__name__}) nor ASE "
                                     f"({type(ase_err).__name__}: {ase_err}) reads it") from ase_err


def _file_entries(path: Path) -> list[Entry]:
    suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    return read_entries(path) if suffix in _READER_SUFFIXES else _generic_entries(path)


def _many_files(paths: list[Path]) -> tuple[list[Entry], list[DroppedRow]]:
    """Entries of each file; a file that cannot be read at all is one dropped row named after it."""
    entries, dropped = [], []
    for path in paths:
        try:
            entries += _file_entries(path)
        except StructureReadError as err:
            dropped.append(DroppedRow(path.name.split(".")[0], str(path), "unparseable", str(err)))
    return entries, dropped


def _list_file_paths(path: Path) -> list[Path]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [(path.parent / line) if not Path(line).is_absolute() else Path(line)
            for line in lines if line and not line.startswith("#")]


def _csv_split_labels(path: Path, column: str) -> list[str]:
    text = gzip.decompress(path.read_bytes()).decode() if path.name.endswith(".gz") else path.read_text()
    reader = csv.DictReader(io.StringIO(text))
    if column not in (reader.fieldnames or []):
        raise ValueError(f"{path}: no split column {column!r}; columns: {reader.fieldnames}")
    return [(row[column] or "").strip() for row in reader]


def read_source(source: str | Path, split_column: str | None = None):
    """(entries, split labels or None, rows dropped while reading) of an import source."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    suffix = path.name.removesuffix(".gz").rsplit(".", 1)[-1].lower()
    if split_column is not None and (path.is_dir() or suffix != "csv"):
        raise ValueError(f"--split-column {split_column!r} needs a CSV source; {source} is not one")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ValueError(f"{source}: the folder holds no files")
        entries, dropped = _many_files(files)
        return entries, None, dropped
    if f".{suffix}" in LIST_SUFFIXES:
        entries, dropped = _many_files(_list_file_paths(path))
        return entries, None, dropped
    entries = read_entries(path)
    labels = _csv_split_labels(path, split_column) if split_column else None
    return entries, labels, []


# ---------------------------------------------------------------- checks
class _Drop(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _checked_structure(entry: Entry, settings: ImportSettings):
    """The entry's ordered, finite ``Structure`` within ``max_atoms``; raises ``_Drop`` with the reason."""
    try:
        structure = entry_to_structure(entry)
    except StructureReadError as err:
        raise _Drop("unparseable", str(err)) from err
    except Exception as err:  # noqa: BLE001 - any failure to parse one row is that row's problem
        raise _Drop("unparseable", f"{entry.source}: {type(err).__name__}: {err}") from err
    if not structure.is_ordered:
        raise _Drop("disordered", f"{entry.source}: partial occupancy ({structure.composition})")
    matrix, frac = np.asarray(structure.lattice.matrix), np.asarray(structure.frac_coords)
    if not (np.isfinite(matrix).all() and np.isfinite(frac).all()):
        raise _Drop("non-finite", f"{entry.source}: non-finite lattice or coordinates")
    if not abs(structure.lattice.volume) > 1e-6:
        raise _Drop("non-finite", f"{entry.source}: degenerate cell (volume {structure.lattice.volume:.3g} Å³)")
    if settings.max_atoms is not None and len(structure) > settings.max_atoms:
        raise _Drop("too many atoms", f"{entry.source}: {len(structure)} atoms > max_atoms {settings.max_atoms}")
    if settings.property is not None:
        value = entry.properties.get(settings.property)
        if value is None or not math.isfinite(value):
            raise _Drop("non-finite", f"{entry.source}: property {settings.property!r} is missing or not "
                                      f"finite ({value})")
    return structure


def _split_label(raw: str, entry: Entry, column: str) -> str:
    label = _SPLIT_ALIASES.get(raw.lower())
    if label is None:
        raise _Drop("no split", f"{entry.source}: split column {column!r} holds {raw!r}, not one of "
                                f"train/val/test")
    return label


# ---------------------------------------------------------------- duplicates and splits
def find_duplicates(structures: list, tolerances: MatchTolerances) -> dict[int, int]:
    """{index: index of the earlier structure it matches} for every structure that matches one before it
    (list order). Each structure is reduced once (Niggli, then primitive: what ``StructureMatcher.fit``
    does to both structures on every call) and only compared within the same reduced formula and
    primitive-cell size, which the matcher (no supercells) would never match across."""
    from pymatgen.core import Structure

    matcher = tolerances.matcher()
    kept: dict[tuple, list[int]] = {}
    reduced, duplicates = [], {}
    for i, structure in enumerate(progress(structures, desc="searching duplicates", unit="row")):
        reduced.append(Structure.from_sites(structure).get_reduced_structure(reduction_algo="niggli")
                       .get_primitive_structure())
        key = (structure.composition.reduced_formula, len(reduced[i]))
        earlier = next((j for j in kept.get(key, [])
                        if matcher.fit(reduced[j], reduced[i], skip_structure_reduction=True)), None)
        if earlier is None:
            kept.setdefault(key, []).append(i)
        else:
            duplicates[i] = earlier
    return duplicates


def assign_splits(num: int, fractions: tuple, seed: int) -> list[str]:
    """Split label of each of ``num`` rows: a seeded permutation (numpy PCG64 with ``seed``) cut at
    round(f·num) for val and test, train taking the rest; a non-zero fraction gets at least one row when
    there are enough rows to go round."""
    sizes = [int(round(f * num)) for f in fractions[1:]]
    for k, f in enumerate(fractions[1:]):
        if f > 0 and sizes[k] == 0 and num - sum(sizes) > (fractions[0] > 0):
            sizes[k] = 1
    order = np.random.default_rng(seed).permutation(num)
    labels = [""] * num
    cuts = {"val": order[:sizes[0]], "test": order[sizes[0]:sizes[0] + sizes[1]],
            "train": order[sizes[0] + sizes[1]:]}
    for split, rows in cuts.items():
        for i in rows:
            labels[int(i)] = split
    return labels


# ---------------------------------------------------------------- writing
def _unique_ids(ids: list[str]) -> list[str]:
    """Ids made unique by appending ``#2``, ``#3`` ... to repeats (first occurrence unchanged)."""
    seen, out = {}, []
    for material_id in ids:
        seen[material_id] = seen.get(material_id, 0) + 1
        out.append(material_id if seen[material_id] == 1 else f"{material_id}#{seen[material_id]}")
    return out


def _write_split(path: Path, rows: list[tuple], prop: str | None) -> None:
    from pymatgen.io.cif import CifWriter

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["material_id", "cif"] + ([prop] if prop else []))
    for material_id, structure, value in rows:
        writer.writerow([material_id, str(CifWriter(structure))] + ([repr(float(value))] if prop else []))
    atomic_write_bytes(path, gzip.compress(buffer.getvalue().encode(), mtime=0))   # same input -> same bytes


def _data_stats(structures: list) -> dict:
    sizes = [len(s) for s in structures]
    elements = sorted({el for s in structures for el in s.composition.elements}, key=lambda el: el.Z)
    return {"max_atoms_in_data": max(sizes, default=0), "min_atoms_in_data": min(sizes, default=0),
            "elements": [el.symbol for el in elements]}


def _check_target(folder: Path, overwrite: bool) -> None:
    existing = [p.name for p in (folder / f"{s}.csv.gz" for s in SPLITS)] if folder.is_dir() else []
    existing = [name for name in existing + [REPORT_NAME] if (folder / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{folder}: already holds {', '.join(existing)}; choose another --name/--out "
                              f"or pass --overwrite")


class _Row(NamedTuple):
    index: int
    material_id: str
    source: str
    structure: object
    value: float | None
    split: str | None


def _checked_rows(entries: list[Entry], labels, settings: ImportSettings, dropped: list) -> list[_Row]:
    ids = _unique_ids([e.material_id for e in entries])
    rows = []
    for k, entry in enumerate(progress(entries, desc="checking structures", unit="row")):
        try:
            split = None if labels is None else _split_label(labels[k], entry, settings.split_column)
            structure = _checked_structure(entry, settings)
        except _Drop as drop:
            dropped.append(DroppedRow(ids[k], entry.source, drop.reason, str(drop)))
            continue
        value = entry.properties.get(settings.property) if settings.property else None
        rows.append(_Row(k, ids[k], entry.source, structure, value, split))
    return rows


def _drop_duplicates(rows: list[_Row], settings: ImportSettings, dropped: list) -> list[_Row]:
    """Rows without the later copies of a structure (earlier: split order train/val/test, then file order)."""
    rows = sorted(rows, key=lambda r: (SPLITS.index(r.split) if r.split else 0, r.index))
    duplicates = find_duplicates([r.structure for r in rows], settings.tolerances)
    t = settings.tolerances
    for i, j in duplicates.items():
        dropped.append(DroppedRow(rows[i].material_id, rows[i].source, "duplicate",
                                  f"{rows[i].source}: same structure as {rows[j].material_id} ({rows[j].source}) "
                                  f"by StructureMatcher(ltol={t.ltol}, stol={t.stol}, angle_tol={t.angle_tol})",
                                  duplicate_of=rows[j].material_id))
    return sorted((r for i, r in enumerate(rows) if i not in duplicates), key=lambda r: r.index)


def import_dataset(source: str | Path, out_dir: str | Path, settings: ImportSettings, *,
                   overwrite: bool = False) -> ImportResult:
    """Read ``source``, drop unusable rows (each reported), split, and write ``out_dir/NAME/`` (split files
    and ``import_report.json``). Raises FileExistsError when the folder already holds a dataset (unless
    ``overwrite``), ValueError when no row is left."""
    folder = Path(out_dir) / settings.name
    _check_target(folder, overwrite)
    entries, labels, dropped = read_source(source, settings.split_column)
    total = len(entries) + len(dropped)   # a file that cannot be read at all counts as one row
    rows = _checked_rows(entries, labels, settings, dropped)
    if settings.dedupe:
        rows = _drop_duplicates(rows, settings, dropped)
    if not rows:
        raise ValueError(f"{source}: nothing to import, all {total} rows dropped ("
                         + ", ".join(f"{d.material_id}: {d.reason}" for d in dropped[:5]) + ")")
    splits = [r.split for r in rows] if labels is not None else assign_splits(len(rows), settings.fractions,
                                                                             settings.seed)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split in SPLITS:
        members = [(r.material_id, r.structure, r.value) for r, s in zip(rows, splits) if s == split]
        _write_split(folder / f"{split}.csv.gz", members, settings.property)
        sizes[split] = len(members)
    result = ImportResult(settings, str(source), folder, total, sizes, dropped,
                          _data_stats([r.structure for r in rows]))
    atomic_write_text(folder / REPORT_NAME, json.dumps(result.to_dict(), indent=2))
    return result
