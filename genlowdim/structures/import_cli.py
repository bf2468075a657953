"""``genlowdim data import SOURCE --name NAME --out DIR``: the command over
:func:`genlowdim.structures.importing.import_dataset` (added to the ``data`` command group)."""
from __future__ import annotations

import argparse
import json

__all__ = ["add_import_command"]


def add_import_command(sub: argparse._SubParsersAction) -> None:
    """Add ``import`` to the ``data`` group's sub-commands."""
    p = sub.add_parser(
        "import", help="turn a folder of CIFs, an extxyz, a CSV with a 'cif' column or a list of structure "
                       "files into a dataset DIR/NAME/{train,val,test}.csv.gz with a report of dropped rows")
    p.add_argument("source", help="folder of structure files, .cif, .extxyz, .csv (with a 'cif' column) or a "
                                  ".txt/.list file of paths (.gz ok)")
    p.add_argument("--name", required=True, help="dataset name: the folder written under --out")
    p.add_argument("--out", required=True, help="data directory (later: --data-dir / data.data_dir)")
    p.add_argument("--split", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST",
                   help="fractions of the seeded split (default 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--split-column", default=None, help="CSV column holding each row's split "
                                                        "(train/val/test) instead of a seeded split")
    p.add_argument("--property", default=None, help="numeric column (CSV) or extxyz info key to keep; rows "
                                                    "without a finite value are dropped")
    p.add_argument("--max-atoms", type=int, default=24, help="drop larger cells (default 24)")
    p.add_argument("--no-dedupe", action="store_true", help="keep duplicate structures")
    p.add_argument("--ltol", type=float, default=0.2, help="duplicate search: StructureMatcher ltol (0.2)")
    p.add_argument("--stol", type=float, default=0.3, help="duplicate search: StructureMatcher stol (0.3)")
    p.add_argument("--angle-tol", type=float, default=5.0,
                   help="duplicate search: StructureMatcher angle_tol in degrees (5)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in DIR/NAME")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_import, start=lambda a: f"importing {a.source} as dataset {a.name} into {a.out}")


def _settings(args: argparse.Namespace):
    from genlowdim.errors import UsageError
    from genlowdim.structures.importing import ImportSettings, MatchTolerances

    try:
        fractions = tuple(float(x) for x in args.split.split(","))
    except ValueError as err:
        raise UsageError(f"--split {args.split!r}: expected three numbers such as 0.8,0.1,0.1") from err
    try:
        return ImportSettings(name=args.name, fractions=fractions, seed=args.seed,
                              split_column=args.split_column, property=args.property,
                              max_atoms=args.max_atoms, dedupe=not args.no_dedupe,
                              tolerances=MatchTolerances(args.ltol, args.stol, args.angle_tol))
    except ValueError as err:
        raise UsageError(str(err)) from err


def _cmd_import(args: argparse.Namespace) -> int:
    from genlowdim.errors import UsageError
    from genlowdim.structures.importing import REPORT_NAME, import_dataset
    from genlowdim.structures.io import StructureReadError

    settings = _settings(args)
    try:
        result = import_dataset(args.source, args.out, settings, overwrite=args.overwrite)
    except (StructureReadError, ValueError) as err:
        raise UsageError(str(err)) from err
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    if not args.json:
        print(f"report: {result.folder / REPORT_NAME}")
    return 0
