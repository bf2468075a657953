"""``genlowdim data ...``: inspect registered datasets (``info``) and check structure files (``check``)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

__all__ = ["register", "dataset_summary", "format_summary"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group."""
    parser = subparsers.add_parser("data", help="inspect crystal datasets and check structure files")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("info", help="split sizes, elements, atoms per cell, lattice statistics")
    p.add_argument("dataset", help="registered dataset (e.g. perov_5), 'perov_5:test', or a dataset folder "
                                   "(DIR/NAME, or NAME with --data-dir)")
    p.add_argument("--split", action="append", choices=["train", "val", "test"],
                   help="split to describe (repeatable; default: every split found)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common_options(p)
    p.set_defaults(func=_cmd_info, start=lambda a: f"describing {a.dataset} (its structure files are parsed on "
                   f"first use and cached)")

    p = sub.add_parser("check", help="load a structure file/folder and print its load report; exit status 1 "
                                     "when a row was skipped or nothing loads")
    p.add_argument("path", help="CDVAE CSV, CIF folder, (multi-block) CIF, extxyz or genlowdim JSON (.gz ok)")
    p.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)   # the default now; kept for scripts
    p.add_argument("--max-atoms", type=int, default=None, help="skip cells with more atoms")
    p.add_argument("--property", default=None, help="property column that must be finite")
    p.add_argument("--no-niggli", action="store_true", help="keep cells as given (no Niggli reduction)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common_options(p)
    p.set_defaults(func=_cmd_check, start=lambda a: f"reading {a.path}")

    from genlowdim.structures.import_cli import add_import_command
    add_import_command(sub)


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="folder holding <name>/{train,val,test}.csv(.gz)")
    p.add_argument("--workers", type=int, default=None, help="parsing processes (default: CPU count)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the parsed-data cache")


def _load(ref: str, split: str | None, args: argparse.Namespace, **kwargs: Any):
    from genlowdim.errors import UsageError
    from genlowdim.crystal.data import load_dataset
    from genlowdim.structures.io import StructureReadError

    try:
        return load_dataset(ref, split, data_dir=args.data_dir, workers=args.workers,
                            cache=not args.no_cache, **kwargs)
    except (StructureReadError, KeyError, ValueError) as err:
        raise UsageError(str(err)) from err


def _cmd_info(args: argparse.Namespace) -> int:
    from genlowdim.errors import UsageError
    from genlowdim.structures.datasets import SPLITS, parse_dataset_ref
    from genlowdim.structures.registry import DATASETS

    try:
        name, ref_split = parse_dataset_ref(args.dataset)
    except ValueError as err:
        raise UsageError(str(err)) from err
    from genlowdim.structures.folders import find_dataset_folder, folder_spec, split_files

    folder = find_dataset_folder(name, args.data_dir)
    if folder is not None:   # an imported (or downloaded) dataset folder: describe its split files
        name, spec, files = str(folder), folder_spec(folder), split_files(folder)
    elif name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))} "
                         f"(use 'genlowdim data check PATH' for files)")
    splits = args.split or ([ref_split] if ref_split else list(SPLITS))
    out: dict[str, Any] = {"dataset": name, "splits": {}, "missing": {}}
    for split in splits:
        try:
            if folder is not None and split not in files:
                raise FileNotFoundError(f"{folder}: no {split}.csv or {split}.csv.gz")
            ds = _load(str(files[split]), None, args) if folder is not None else _load(name, split, args)
        except FileNotFoundError as err:
            if args.split or ref_split:
                raise
            out["missing"][split] = str(err)
            continue
        out["splits"][split] = {"file": ds.report.source, "report": ds.report.to_dict(),
                                **dataset_summary(ds.records)}
    if not out["splits"]:
        raise FileNotFoundError(next(iter(out["missing"].values())))
    print(json.dumps(out, indent=2) if args.json else format_summary(out, spec if folder else DATASETS[name]))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Exit status 0 when every row loads, 1 when some were skipped or none loaded (a check that found
    problems), 2 when the file cannot be read at all."""
    from pathlib import Path

    from genlowdim.errors import EXIT_OK, EXIT_PROBLEMS

    path = Path(args.path)
    if path.is_file() and path.stat().st_size == 0:
        print(f"genlowdim: data check: {path} is empty (0 bytes)", file=sys.stderr)
        return EXIT_PROBLEMS
    ds = _load(args.path, None, args, niggli=not args.no_niggli, max_atoms=args.max_atoms,
               property=args.property)
    report = ds.report
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    if report.total == 0:
        print(f"genlowdim: data check: {args.path} is empty (no rows)", file=sys.stderr)
        return EXIT_PROBLEMS
    if report.loaded == 0:
        print(f"genlowdim: data check: nothing loads from {args.path}: all {report.total} rows skipped "
              f"(reasons above)", file=sys.stderr)
        return EXIT_PROBLEMS
    if report.num_skipped:
        print(f"genlowdim: data check: {report.num_skipped} of {report.total} rows skipped in {args.path} "
              f"(reasons above)", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def dataset_summary(records: Sequence) -> dict[str, Any]:
    """Element counts, atoms per cell and lattice statistics of a list of ``CrystalRecord``."""
    from collections import Counter

    import numpy as np
    from pymatgen.core import Element

    if not records:
        return {"crystals": 0}
    atoms = np.array([r.num_atoms for r in records])
    elements = Counter(Element.from_Z(int(z)).symbol for r in records for z in r.atom_types)
    lengths = np.stack([r.lengths for r in records])
    angles = np.stack([r.angles for r in records])
    volumes = np.array([abs(np.linalg.det(r.lattice)) for r in records])

    def stats(values):
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "min": float(np.min(values)),
                "max": float(np.max(values))}

    sizes, counts = np.unique(atoms, return_counts=True)
    return {"crystals": len(records),
            "atoms_per_cell": {**stats(atoms), "histogram": {int(k): int(v) for k, v in zip(sizes, counts)}},
            "elements": dict(elements.most_common()),
            "lengths": {k: stats(lengths[:, i]) for i, k in enumerate("abc")},
            "angles": {k: stats(angles[:, i]) for i, k in enumerate(("alpha", "beta", "gamma"))},
            "volume_per_atom": stats(volumes / atoms)}


def _stat(s: dict, digits: int = 2) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def format_summary(out: dict, spec) -> str:
    """Readable table of :func:`dataset_summary` results per split."""
    lines = [f"dataset {spec.name}: property {spec.property}, max_atoms {spec.max_atoms}, "
             f"coverage thresholds {spec.cov_thresholds}", f"  source: {spec.provenance}", ""]
    rows = [("split", "crystals", "expected", "skipped", "atoms/cell", "elements", "Å³/atom")]
    for split, s in out["splits"].items():
        rows.append((split, str(s["crystals"]), str(spec.splits.get(split, "?")),
                     str(sum(s["report"]["skipped"].values())), _stat(s["atoms_per_cell"], 1),
                     str(len(s["elements"])), _stat(s["volume_per_atom"], 1)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    for split, s in out["splits"].items():
        lines += ["", f"[{split}] lattice (mean ± std [min, max])"]
        lines += [f"  {k:<6} {_stat(v)} Å" for k, v in s["lengths"].items()]
        lines += [f"  {k:<6} {_stat(v)} °" for k, v in s["angles"].items()]
        top = ", ".join(f"{el} {n}" for el, n in list(s["elements"].items())[:12])
        lines.append(f"  most common elements (atoms): {top}")
        lines.append(f"  atoms per cell: {s['atoms_per_cell']['histogram']}")
        lines += [f"  note: {n}" for n in s["report"]["notes"]]
    lines += [f"\n{split}: not available ({msg})" for split, msg in out["missing"].items()]
    return "\n".join(lines)
