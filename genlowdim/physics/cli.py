"""``genlowdim relax``: relax crystals with CHGNet (cell and positions), resumable, offline.

    genlowdim relax INPUT --out DIR [--optimizer FIRE|BFGS] [--fmax 0.05] [--steps 500] [--batch-size 64]
                              [--symmetry] [--symprec 0.1] [--pressure 0] [--workers 0]

INPUT: a genlowdim sample folder (its ``samples.extxyz``), a CIF folder, (multi-block) CIF, extxyz, CDVAE
CSV or genlowdim JSON (``.gz`` fine), or a dataset split ``name:split``. DIR receives ``relaxed.extxyz``,
``cif/``, ``relax.json`` and ``relax.csv`` (energy per atom before and after, RMSD to the relaxed
structure in Å, steps, converged, the space group before and after at ``--symprec``, the error of a
structure that failed). ``--symmetry`` keeps each structure's space group (ASE ``FixSymmetry`` at
``--symprec``); without it cell and positions relax freely and the record's ``constraint`` is null.
``--pressure`` GPa relaxes under that hydrostatic pressure (the enthalpy E + PV is minimised and recorded
as ``enthalpy_per_atom_final``; energies stay E). ``--workers`` processes (default: one per usable core)
share the batches, one torch thread each.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``relax`` command."""
    p = subparsers.add_parser("relax", help="relax crystals with CHGNet (cell + positions; offline)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="structures: sample folder, CIF folder, file or name:split")
    p.add_argument("--out", required=True, help="output folder (resumed when rerun with the same settings)")
    p.add_argument("--optimizer", choices=("FIRE", "BFGS"), default="FIRE", help="ASE optimiser (default FIRE)")
    p.add_argument("--fmax", type=float, default=0.05, help="converged when every force ≤ this, eV/Å (0.05)")
    p.add_argument("--steps", type=int, default=500, help="at most this many optimiser steps (500)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="structures relaxed in lockstep, one batched CHGNet call per step; also the unit of "
                   "resumption (64)")
    p.add_argument("--symmetry", action="store_true",
                   help="keep each structure's space group (found at --symprec) with ASE's FixSymmetry "
                   "(default: free cell and positions)")
    p.add_argument("--symprec", type=float, default=0.1,
                   help="symmetry tolerance, Å, of --symmetry and of the recorded space groups (0.1)")
    p.add_argument("--pressure", type=float, default=0.0,
                   help="hydrostatic pressure to relax under, GPa (default 0): the cell minimises E + PV")
    p.add_argument("--workers", type=int, default=0,
                   help="processes of one torch thread each that share the batches (default 0: one per usable "
                   "core; 1: this process alone, with --threads)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads with --workers 1 (default: torch's own choice)")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets (for name:split)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard results of other settings already in --out (default: resume only results "
                   "of the same settings, stop otherwise)")
    p.set_defaults(func=run, start=lambda a: f"relaxing {a.input} with CHGNet ({a.optimizer}, fmax {a.fmax:g} "
                   f"eV/Å, at most {a.steps:,} steps) into {a.out}")


def load_input(spec: str, data_dir: str | None = None) -> tuple[list[str], list]:
    """(ids, structures) of a file, folder, sample folder or dataset split ``name:split``."""
    from genlowdim.errors import UsageError
    from genlowdim.structures.io import StructureReadError, read_structures

    path = Path(spec)
    if ":" in spec and not path.exists():
        from genlowdim.structures.datasets import load_structures

        try:
            return load_structures(spec, data_dir=data_dir)
        except (KeyError, ValueError, FileNotFoundError) as err:
            raise UsageError(f"{spec}: {err}") from err
    if path.is_dir() and (path / "samples.extxyz").is_file():
        path = path / "samples.extxyz"
    try:
        pairs = read_structures(path)
    except StructureReadError as err:
        raise UsageError(str(err)) from err
    if not pairs:
        raise UsageError(f"{path}: holds no structures")
    return [i for i, _ in pairs], [s for _, s in pairs]


def run(args: argparse.Namespace) -> int:
    from genlowdim.errors import require_positive
    from genlowdim.errors import UsageError

    require_positive(args, "batch_size", "threads")
    if args.workers < 0:
        raise UsageError(f"--workers must be ≥ 0 (0: one per usable core), got {args.workers}")
    if args.steps < 0 or args.fmax <= 0 or args.symprec <= 0:
        raise UsageError(f"--steps must be ≥ 0, --fmax and --symprec > 0 (got {args.steps}, {args.fmax}, "
                         f"{args.symprec})")
    ids, structures = load_input(args.input, args.data_dir)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from genlowdim.physics.folder import relax_to_folder
    from genlowdim.physics.relax import RelaxSettings
    from genlowdim.physics.workers import resolve_workers

    settings = RelaxSettings(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps,
                             batch_size=args.batch_size, symmetry=args.symmetry, symprec=args.symprec,
                             pressure=args.pressure,
                             workers=resolve_workers(args.workers))
    report = relax_to_folder(ids, structures, args.out, settings, overwrite=args.overwrite, source=args.input)
    print(format_summary(report))
    print(f"wrote {Path(args.out) / 'relax.json'}", file=sys.stderr)
    return 0


def format_summary(report: dict) -> str:
    """A few lines: counts, RMSD to relaxed, failures."""
    s, rmsd = report["summary"], report["summary"]["rmsd"]
    p = rmsd["params"]
    lines = [f"relaxed {s['num_relaxed']} of {report['num_structures']} ({s['num_converged']} converged, "
             f"{s['num_failed']} failed) with {report['potential']['potential']} {report['potential']['weights']}, "
             f"{report['settings']['constraint'] or 'no constraint (free cell and positions)'}"]
    if p["mean_angstrom"] is not None:
        lines.append(f"RMSD to relaxed: mean {p['mean_angstrom']:.4f} Å, median {p['median_angstrom']:.4f} Å, "
                     f"within {p['threshold_angstrom']} Å: {100 * rmsd['value']:.1f}%")
    lines += [f"  failed {f['id']}: {f['error']}" for f in s["failed"][:5]]
    return "\n".join(lines)
