"""Crystal datasets as preprocessed records: CDVAE-style preprocessing, parallel parsing with a load report,
and an on-disk cache of arrays and JSON (no pickle).

Preprocessing follows CDVAE (Xie et al., ICLR 2022): parse the CIF, Niggli-reduce the cell (optional),
read its lattice parameters and rebuild the lattice from them with ``Lattice.from_parameters`` (the
canonical orientation: c along z), keep the fractional coordinates (wrapped into [0, 1)).
Rows that cannot be used are skipped and counted by reason in a :class:`LoadReport`; ``strict=True``
raises :class:`DataError` naming the file and row instead. The models' PyG view of these records is
``genlowdim.crystal.data``; the evaluation reads reference sets (``perov_5:test``) from here.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from genlowdim.runtime import atomic_write_bytes, atomic_write_text, cache_dir, progress, usable_cpus
from genlowdim.structures.io import (Entry, StructureReadError, check_finite, entry_to_structure, parse_p1_cif,
                                    read_entries)
from genlowdim.structures.registry import DATASETS, DatasetSpec, get_spec

__all__ = ["CrystalRecord", "LoadReport", "DataError", "record_from_structure", "load_records",
           "load_structures", "parse_dataset_ref", "resolve_dataset_path", "repo_datasets_dir", "SPLITS"]

SPLITS = ("train", "val", "test")
MAX_EXAMPLES_PER_REASON = 3
_MIN_VOLUME = 1e-6  # Å³; below this a cell is degenerate


class DataError(ValueError):
    """A dataset row could not be used and ``strict=True`` was asked (the message names file and row)."""


@dataclass(frozen=True, eq=False)
class CrystalRecord:
    """One preprocessed crystal. frac_coords: (N, 3) float64 in [0, 1); atom_types: (N,) int64 atomic
    numbers; lengths: (3,) Å; angles: (3,) degrees; lattice: (3, 3) rows = vectors, rebuilt from
    (lengths, angles) in pymatgen's convention; properties: column -> value; source: "file:row"."""

    material_id: str
    frac_coords: np.ndarray
    atom_types: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    lattice: np.ndarray
    properties: dict
    source: str = ""

    @property
    def num_atoms(self) -> int:
        return int(self.atom_types.shape[0])

    def to_structure(self):
        """The crystal as a pymatgen ``Structure`` (canonical lattice, fractional coordinates)."""
        return Structure(Lattice(self.lattice), self.atom_types.tolist(), self.frac_coords)


def _make_record(material_id: str, params: Sequence[float], atom_types: Sequence[int], frac: np.ndarray,
                 properties: dict | None, source: str) -> CrystalRecord:
    lattice = Lattice.from_parameters(*params)
    return CrystalRecord(
        material_id=str(material_id), frac_coords=np.mod(np.asarray(frac, dtype=np.float64), 1.0),
        atom_types=np.asarray(atom_types, dtype=np.int64), lengths=np.asarray(params[:3], dtype=np.float64),
        angles=np.asarray(params[3:], dtype=np.float64), lattice=np.array(lattice.matrix, dtype=np.float64),
        properties=dict(properties or {}), source=source)


def _check_cell(lattice, where: str) -> None:
    if not (np.all(np.asarray(lattice.abc) > 0) and lattice.volume > _MIN_VOLUME):
        raise StructureReadError(f"{where}: degenerate cell (lengths {np.round(lattice.abc, 4)} Å, volume "
                                 f"{lattice.volume:.3g} Å³)", "non-positive volume")


def record_from_structure(structure, material_id: str, properties: dict | None = None, niggli: bool = True,
                          source: str = "") -> CrystalRecord:
    """CDVAE preprocessing of a pymatgen ``Structure`` (ordered; sites keep their order): optional Niggli
    reduction, lattice rebuilt from its parameters, fractional coordinates kept (wrapped into [0, 1))."""
    if not structure.is_ordered:
        raise StructureReadError(f"{source or material_id}: partial occupancies are not supported",
                                 "disordered site")
    check_finite(structure.lattice.matrix, structure.frac_coords, source or str(material_id))
    _check_cell(structure.lattice, source or str(material_id))
    if niggli:
        structure = structure.get_reduced_structure()
    atom_types = [site.specie.Z for site in structure]
    return _make_record(material_id, structure.lattice.parameters, atom_types, structure.frac_coords,
                        properties, source)


def _fast_record(entry: Entry, niggli: bool) -> CrystalRecord | None:
    """The same record as ``record_from_structure(parse_cif(...))`` for a plain P1 CIF, computed on arrays
    (skips building pymatgen sites twice, ~3x faster); None when the CIF needs the general path."""
    cell = parse_p1_cif(entry.payload)
    if cell is None:
        return None
    check_finite(np.asarray(cell.params), cell.frac_coords, entry.source)
    elements = [Element(s) for s in cell.symbols]
    electroneg = [e.X for e in elements]  # CifParser sorts sites by (electronegativity, symbol)
    if any(math.isnan(x) for x in electroneg):
        return None
    order = sorted(range(len(elements)), key=lambda k: (electroneg[k], cell.symbols[k]))
    frac = cell.frac_coords[order]
    lattice = Lattice.from_parameters(*cell.params)
    _check_cell(lattice, entry.source)
    if niggli:
        reduced = lattice.get_niggli_reduced_lattice()
        if reduced != lattice:
            frac = np.mod(np.dot(np.dot(frac, lattice.matrix), reduced.inv_matrix), 1.0)
        lattice = reduced
    return _make_record(entry.material_id, lattice.parameters, [elements[k].Z for k in order], frac,
                        entry.properties, entry.source)


def _check_record(record: CrystalRecord, max_atoms: int | None, prop: str | None) -> None:
    if max_atoms is not None and record.num_atoms > max_atoms:
        raise StructureReadError(f"{record.source}: {record.num_atoms} atoms > max_atoms {max_atoms}",
                                 "too many atoms")
    if prop is not None and not math.isfinite(record.properties.get(prop, math.nan)):
        raise StructureReadError(f"{record.source}: property {prop!r} is missing or not finite "
                                 f"({record.properties.get(prop)})", "NaN property")


def _process_entry(entry: Entry, options: tuple) -> CrystalRecord | tuple[str, str, str]:
    """A record, or (reason, source, message) when the row cannot be used."""
    niggli, max_atoms, prop = options
    try:
        record = _fast_record(entry, niggli) if entry.kind == "cif" else None
        if record is None:
            record = record_from_structure(entry_to_structure(entry), entry.material_id, entry.properties,
                                           niggli, entry.source)
        _check_record(record, max_atoms, prop)
        return record
    except StructureReadError as err:
        return err.reason, entry.source, str(err)
    except Exception as err:  # noqa: BLE001 - any other failure on a row is reported, not fatal
        return "unparsable structure", entry.source, f"{entry.source}: {type(err).__name__}: {err}"


def _process_chunk(entries: list[Entry], options: tuple) -> list:
    return [_process_entry(e, options) for e in entries]


@dataclass
class LoadReport:
    """What happened while loading: rows seen, loaded, skipped by reason, first examples per reason."""

    source: str
    total: int = 0
    loaded: int = 0
    skipped: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add_skip(self, reason: str, where: str, message: str, every: bool = False) -> None:
        """Count one skipped row; its message is kept among the first few of its reason, or always when
        ``every`` (the files of a folder: each bad one is named)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if every or self.skipped[reason] <= MAX_EXAMPLES_PER_REASON:
            self.examples.append({"reason": reason, "where": where, "message": message})

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict:
        return {"source": self.source, "total": self.total, "loaded": self.loaded,
                "skipped": dict(self.skipped), "examples": list(self.examples), "notes": list(self.notes)}

    def summary(self) -> str:
        lines = [f"{self.source}: {self.loaded} of {self.total} rows loaded, {self.num_skipped} skipped"]
        lines += [f"  {count:6d}  {reason}" for reason, count in sorted(self.skipped.items())]
        lines += [f"  e.g. {ex['message']} [{ex['reason']}]" for ex in self.examples]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------- locating files
def repo_datasets_dir() -> Path:
    """``<repo>/datasets`` next to the package (present in a source checkout / editable install)."""
    return Path(__file__).resolve().parents[2] / "datasets"


def parse_dataset_ref(ref: str) -> tuple[str, str | None]:
    """``"perov_5:test"`` -> ("perov_5", "test"); ``"perov_5"`` or an existing path -> (ref, None)."""
    ref = str(ref)
    if Path(ref).exists() or ":" not in ref:
        return ref, None
    name, _, split = ref.rpartition(":")
    if split not in SPLITS:
        raise ValueError(f"{ref!r}: split must be one of {', '.join(SPLITS)} (as in 'perov_5:test')")
    return name, split


def resolve_dataset_path(name: str, split: str, data_dir: str | Path | None = None) -> Path:
    """File of a registered dataset split: ``data_dir``, then ``$GENLOWDIM_DATA_DIR``, then (shipped
    datasets) the repository's ``datasets/``; each as ``DIR/<name>/<split>.csv(.gz)``."""
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"dataset {name!r}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    roots = [Path(d) for d in (data_dir, os.environ.get("GENLOWDIM_DATA_DIR")) if d]
    roots.append(repo_datasets_dir())   # shipped datasets, and the shipped splits of others (carbon_24)
    tried = []
    for root in roots:
        for suffix in (".csv.gz", ".csv"):
            candidate = root / name / f"{split}{suffix}"
            tried.append(str(candidate))
            if candidate.is_file():
                return candidate
    hint = "" if spec.shipped else f" ({name}:{split} is not shipped with genlowdim; download CDVAE's data)"
    raise FileNotFoundError(
        f"dataset {name!r} split {split!r} not found{hint}; tried: {', '.join(tried) or 'no directory'}. "
        f"Expected layout DIR/{name}/{{train,val,test}}.csv(.gz) with DIR given by --data-dir / data_dir= "
        f"or the GENLOWDIM_DATA_DIR environment variable")


# ---------------------------------------------------------------- cache
# 3: arrays (.npz, read with allow_pickle=False) + JSON; formats 1-2 were pickles and are never read.
# 4: rows with a non-finite lattice or coordinate are skipped (a format-3 entry may hold them).
CACHE_FORMAT = 4


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode() + b"\0" if path.is_dir() else b"")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _pack_records(records: Sequence[CrystalRecord]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Records as a few concatenated arrays (loading 10⁴ small arrays is ~20x slower) and the names of the
    property columns; every array has a plain dtype, so it loads without pickle."""
    columns = sorted({key for r in records for key in r.properties})
    arrays = {"material_id": np.array([r.material_id for r in records], dtype=str),
              "source": np.array([r.source for r in records], dtype=str),
              "num_atoms": np.array([r.num_atoms for r in records], dtype=np.int64),
              "frac_coords": np.concatenate([r.frac_coords for r in records]) if records else np.zeros((0, 3)),
              "atom_types": np.concatenate([r.atom_types for r in records]) if records else np.zeros(0, np.int64),
              **{name: np.array([getattr(r, name) for r in records], dtype=np.float64).reshape(-1, *shape)
                 for name, shape in (("lengths", (3,)), ("angles", (3,)), ("lattice", (3, 3)))}}
    for k, c in enumerate(columns):
        arrays[f"property_{k}"] = np.array([r.properties.get(c, np.nan) for r in records], dtype=float)
        arrays[f"has_property_{k}"] = np.array([c in r.properties for r in records], dtype=bool)
    return arrays, columns


def _unpack_records(arrays, columns: list[str]) -> list[CrystalRecord]:
    ends = np.cumsum(arrays["num_atoms"])
    frac = np.split(arrays["frac_coords"], ends[:-1])
    types = np.split(arrays["atom_types"], ends[:-1])
    ids, sources = arrays["material_id"].tolist(), arrays["source"].tolist()
    props = [{} for _ in ids]
    for k, column in enumerate(columns):
        values = arrays[f"property_{k}"]
        for i in np.nonzero(arrays[f"has_property_{k}"])[0]:
            props[i][column] = float(values[i])
    lengths, angles, lattice = arrays["lengths"], arrays["angles"], arrays["lattice"]
    return [CrystalRecord(mid, frac[i], types[i], lengths[i], angles[i], lattice[i], props[i], sources[i])
            for i, mid in enumerate(ids)]


def _read_cache(stem: Path, key: str):
    """(records, report) stored under ``stem`` for ``key``, or None (missing, stale or unreadable)."""
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
        if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
            return None
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as arrays:
            records = _unpack_records(arrays, meta["columns"])
        return records, LoadReport(**meta["report"])
    except Exception:  # noqa: BLE001 - a damaged or foreign cache file is simply rebuilt
        return None


def _write_cache(stem: Path, key: str, records, report: LoadReport) -> None:
    arrays, columns = _pack_records(records)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(stem.with_suffix(".npz"), buffer.getvalue())
    meta = {"format": CACHE_FORMAT, "key": key, "columns": columns, "report": report.to_dict()}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta))   # written last: marks the entry whole


def _cached_build(path: Path, options: tuple, build, use_cache: bool):
    """Records and report from the cache when the file content and options match, else built and stored
    (arrays in ``.npz`` + metadata in ``.json``, both written atomically)."""
    if not use_cache:
        return build()
    key = hashlib.sha256(f"{CACHE_FORMAT}|{_content_hash(path)}|{options!r}".encode()).hexdigest()
    stem = cache_dir() / "datasets" / f"{path.name.split('.')[0]}-{key[:24]}"
    cached = _read_cache(stem, key)
    if cached is not None:
        return cached
    records, report = build()
    _write_cache(stem, key, records, report)
    return records, report


# ---------------------------------------------------------------- loading
def _parse_entries(entries: list[Entry], options: tuple, workers: int, label: str) -> list:
    chunk = 256
    chunks = [entries[k:k + chunk] for k in range(0, len(entries), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        return [out for part in progress(chunks, desc=label, unit="chunk") for out in
                _process_chunk(part, options)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_process_chunk, chunks, [options] * len(chunks))
        return [out for part in progress(results, total=len(chunks), desc=label, unit="chunk") for out in part]


def _build(path: Path, options: tuple, workers: int) -> tuple[list[CrystalRecord], LoadReport]:
    entries = read_entries(path)
    report = LoadReport(source=str(path), total=len(entries))
    records = []
    for result in _parse_entries(entries, options, workers, f"parsing {path.name}"):
        if isinstance(result, CrystalRecord):
            records.append(result)
        else:
            report.add_skip(*result, every=path.is_dir())
    report.loaded = len(records)
    return records, report


def load_records(name_or_path: str | Path, split: str | None = None, *, data_dir: str | Path | None = None,
                 niggli: bool = True, max_atoms: int | None = None, strict: bool = False, cache: bool = True,
                 workers: int | None = None, property: str | None = None
                 ) -> tuple[list[CrystalRecord], LoadReport, DatasetSpec | None, str | None]:
    """(records, report, spec, property) of a registered dataset split (``"perov_5", "test"`` or
    ``"perov_5:test"``) or a structure file or folder (CDVAE CSV, CIF folder, multi-block CIF, extxyz,
    genlowdim JSON; optionally .gz).

    niggli: Niggli-reduce cells (CDVAE does); max_atoms: skip larger cells; property: the selected column
    (default: the registered dataset's property); rows with a missing/NaN property are skipped when a
    property is selected. workers: parsing processes (default: usable CPUs). cache: reuse processed
    records stored under ``$GENLOWDIM_CACHE_DIR`` or ``~/.cache/genlowdim`` (keyed on the file's sha256
    and the options). strict: raise ``DataError`` at the first unusable row instead of skipping it.
    """
    name, ref_split = parse_dataset_ref(str(name_or_path))
    split = split or ref_split
    spec = None
    if name in DATASETS:
        if split is None:
            raise ValueError(f"dataset {name!r}: give a split ({', '.join(SPLITS)}), e.g. '{name}:test'")
        spec = get_spec(name)
        path = resolve_dataset_path(name, split, data_dir)
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise FileNotFoundError(f"{name_or_path}: no such file or folder, and not a registered dataset "
                                    f"({', '.join(sorted(DATASETS))})")
    prop = property if property is not None else (spec.property if spec else None)
    options = (bool(niggli), None if max_atoms is None else int(max_atoms), prop)
    workers = usable_cpus() if workers is None else max(1, int(workers))
    records, report = _cached_build(path, options, lambda: _build(path, options, workers), cache)
    if spec is not None and split in spec.splits and report.total != spec.splits[split]:
        approx = "approximately " if spec.approximate_counts else ""
        report.notes.append(f"{report.total} rows, the registered split has {approx}{spec.splits[split]}")
    if strict and report.num_skipped:
        first = report.examples[0]
        raise DataError(f"{first['message']} [{first['reason']}; {report.num_skipped} unusable rows in "
                        f"{path}; use strict=False to skip them]")
    return records, report, spec, prop



def load_structures(name_or_path: str | Path, split: str | None = None, **options) -> tuple[list[str], list]:
    """(ids, pymatgen Structures) of a dataset split or file, preprocessed as for training (Niggli-reduced,
    lattice rebuilt from its parameters): the crystals CDVAE evaluates against. ``options``: as
    :func:`load_records`."""
    records = load_records(name_or_path, split, **options)[0]
    return [str(r.material_id) for r in records], [r.to_structure() for r in records]
