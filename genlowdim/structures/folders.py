"""Dataset folders: ``DIR/NAME/{train,val,test}.csv(.gz)`` outside the registry, such as those
``genlowdim data import`` writes (with ``import_report.json``) or a CDVAE download.

Models read the sizes that depend on the data from here: the largest cell (``folder_max_atoms``) and the
property column (``folder_property``), so nothing about a user's dataset comes from perov_5's constants.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from genlowdim.structures.datasets import SPLITS, repo_datasets_dir
from genlowdim.structures.registry import DATASETS, DatasetSpec

__all__ = ["find_dataset_folder", "split_files", "read_import_report", "folder_property", "folder_max_atoms",
           "folder_spec"]


def split_files(folder: str | Path) -> dict[str, Path]:
    """{split: file} of the split files present in ``folder`` (``.csv.gz`` preferred over ``.csv``)."""
    folder, found = Path(folder), {}
    for split in SPLITS:
        for suffix in (".csv.gz", ".csv"):
            if (folder / f"{split}{suffix}").is_file():
                found[split] = folder / f"{split}{suffix}"
                break
    return found


def find_dataset_folder(dataset: str, data_dir: str | Path | None = None) -> Path | None:
    """The folder behind ``dataset``: itself when it is an existing folder; for a name that is not
    registered, ``data_dir/NAME``, then ``$GENLOWDIM_DATA_DIR/NAME``, then the repository's ``datasets/NAME``
    (imported sets shipped with a model, e.g. carbon_24_val); None for registered names (the registry finds
    their files) and for names found nowhere."""
    if Path(dataset).is_dir():
        return Path(dataset)
    if dataset in DATASETS:
        return None
    for root in (data_dir, os.environ.get("GENLOWDIM_DATA_DIR"), repo_datasets_dir()):
        if root and (Path(root) / dataset).is_dir():
            return Path(root) / dataset
    return None


def read_import_report(folder: str | Path) -> dict | None:
    """The folder's ``import_report.json`` (None when it has none)."""
    from genlowdim.structures.importing import REPORT_NAME

    path = Path(folder) / REPORT_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def folder_property(folder: str | Path) -> str | None:
    """The property column the import wrote (None: no report or no property)."""
    report = read_import_report(folder)
    return report.get("property") if report else None


def folder_max_atoms(folder: str | Path, niggli: bool = True) -> int:
    """The largest cell over every split of the folder: from its import report, else by loading the split
    files (cached). Raises FileNotFoundError when the folder holds no split file."""
    report = read_import_report(folder)
    if report and report.get("max_atoms_in_data"):
        return int(report["max_atoms_in_data"])
    from genlowdim.structures.datasets import load_records

    files = split_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no {{train,val,test}}.csv(.gz)")
    sizes = [r.num_atoms for f in files.values() for r in load_records(f, niggli=niggli)[0]]
    if not sizes:
        raise ValueError(f"{folder}: no usable crystals in {', '.join(str(f) for f in files.values())}")
    return max(sizes)


def folder_spec(folder: str | Path) -> DatasetSpec:
    """A ``DatasetSpec`` describing a dataset folder (split sizes and property from its import report when
    there is one), for summaries that print a registered dataset's spec."""
    folder = Path(folder)
    report = read_import_report(folder) or {}
    prop = report.get("property")
    return DatasetSpec(
        name=folder.name, splits=dict(report.get("splits", {})), property=prop,
        properties=(prop,) if prop else (), max_atoms=int(report.get("max_atoms_in_data") or 0),
        min_atoms=int(report.get("min_atoms_in_data") or 1),
        cov_thresholds=None,   # none known for a user's data: evaluate takes --cutoffs
        shipped=False, citation="", provenance=_provenance(folder, report))


def _provenance(folder: Path, report: dict) -> str:
    if not report:
        return f"folder {folder}"
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(report.get("dropped", {}).items())) or "none"
    return (f"imported from {report['source']} by genlowdim data import: {report.get('rows')} rows, "
            f"{report.get('written')} written; dropped: {dropped} (rows named in {folder / 'import_report.json'})")
