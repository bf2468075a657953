"""Relaxation throughput with CHGNet on 5-atom perov_5 cells: one structure at a time against the lockstep
batch, in the same run, on the same crystals, with the same optimiser; and whether a cheaper cell filter
changes the answers.

Baseline: CHGNet's own ASE calculator (``chgnet.model.dynamics.CHGNetCalculator``) on each crystal in turn,
``FrechetCellFilter`` + the ASE optimiser, ``optimizer.run(fmax, steps)``: the usual way to relax with a
universal potential; ``--baseline-num K`` runs it on the first K of the crystals only (it is slow), and the
rows compare seconds per crystal. Lockstep: ``genlowdim.physics.relax.relax_structures`` with
``batch_size`` each of ``--batch-sizes`` (default: all crystals in one batch, one batched CHGNet call per
step; ``--chunks``: at most so many structures per CHGNet pass) and each cell filter of ``--filters``: ``log`` (used: ``make_filter``, forces once per step, the
positions' logarithm from the forces' one), ``once`` (forces once per step, ASE's positions: the previous
path), ``frechet`` (ASE's FrechetCellFilter as is), ``unitcell`` (ASE's UnitCellFilter: no matrix
logarithm); ``--predict-graph`` adds the lockstep with CHGNet's own ``predict_graph`` (two backward
passes). ``--workers W`` adds the lockstep as ``genlowdim relax --workers W`` runs it (the package's own
split over W forked processes of one thread each), compared with one process one at a time: what a user
gets from the command against what one runs by hand on the same machine; ``--baseline-threads T`` adds one
at a time on T torch threads (torch's default on a T-core machine) in one process. ``--processes 1 2`` repeats every row in 2 forked processes, each with a contiguous half of the
crystals (the baseline too, so that each lockstep row is compared with the baseline on as many cores).
Wall and CPU seconds per crystal (CPU: this process and its finished children), the ratio to the baseline
with the same number of processes, optimiser steps, the 1-minute load average after the row, and the
agreement of each row's final energies and structures with the first lockstep row on the crystals both
relaxed (one at a time against lockstep shows the float-level spread of the same method: unstable cubic
cells sit on saddles). ``--filter-cost`` and ``--pass-cost`` time the cell filters and the CHGNet passes
alone.

Usage: python bench/relax.py [--num 8] [--baseline-num K] [--split test] [--optimizer BFGS] [--steps 100]
       [--threads 1] [--batch-sizes 16 128] [--chunks 8] [--processes 1 2] [--filters log frechet once unitcell]
       [--symmetry] [--predict-graph] [--filter-cost] [--pass-cost] [--workers W] [--baseline-threads T]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time

os.environ.setdefault("GENLOWDIM_QUIET", "1")


def one_at_a_time(structures, settings) -> list[tuple]:
    """(final structure, energy per atom in eV, steps) of each crystal relaxed alone through CHGNet's ASE
    calculator (with ``FixSymmetry`` when ``settings.symmetry``)."""
    import ase.optimize
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from genlowdim.physics.potential import atoms_to_structure, load_potential

    # the calculator sets on_isolated_atoms on the shared model: keep load_potential's "error"
    calc = CHGNetCalculator(model=load_potential().model, use_device="cpu", on_isolated_atoms="error")
    out = []
    for s in structures:
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.calc = calc
        if settings.symmetry:
            atoms.set_constraint(FixSymmetry(atoms, symprec=settings.symprec))
        opt = getattr(ase.optimize, settings.optimizer)(FrechetCellFilter(atoms), logfile=None)
        opt.run(fmax=settings.fmax, steps=settings.steps)
        out.append((atoms_to_structure(atoms), atoms.get_potential_energy() / len(atoms), opt.nsteps))
    return out


def chgnet_predict_graph(model, graphs):
    """The previous batched call: CHGNet's own ``predict_graph`` (two backward passes with create_graph)."""
    out = model.predict_graph(graphs, task="efs", batch_size=len(graphs))
    return out if isinstance(out, list) else [out]


def filter_maker(name: str):
    """The cell filter ``name`` (log, once, frechet, unitcell) as a function of the atoms."""
    import ase.filters

    from genlowdim.physics.relax import make_filter

    return {"log": make_filter, "once": lambda atoms, **kw: make_filter(atoms, reuse_log=False, **kw),
            "frechet": ase.filters.FrechetCellFilter, "unitcell": ase.filters.UnitCellFilter}[name]


FILTERS = ("log", "once", "frechet", "unitcell")


def lockstep(structures, settings, cell_filter: str = "log", chunk: int | None = None, efs=None) -> list[tuple]:
    """(final structure or None, final energy per atom or nan, steps) of each crystal relaxed by
    ``relax_structures`` with the cell filter ``cell_filter``, CHGNet passes of at most ``chunk`` structures
    (``Potential.batch_size``; default: the potential's) and, if given, the batched energy/forces/stress
    function replaced by ``efs``."""
    import genlowdim.physics.potential as potential_module
    import genlowdim.physics.relax as relax_module

    potential = potential_module.load_potential()
    saved = relax_module.make_filter, potential_module.energy_forces_stress, potential.batch_size
    relax_module.make_filter = filter_maker(cell_filter)
    potential_module.energy_forces_stress = efs or saved[1]
    potential.batch_size = chunk or saved[2]
    try:
        results = relax_module.relax_structures(structures, settings, potential)
    finally:
        relax_module.make_filter, potential_module.energy_forces_stress, potential.batch_size = saved
    return [(r.relaxed, float("nan") if r.energy_final is None else r.energy_final, r.steps) for r in results]


def _call(job):
    fn, structures, kwargs = job
    return fn(structures, **kwargs)


def split_run(fn, structures, processes: int, **kwargs) -> tuple[list, float, float]:
    """``fn(structures, **kwargs)`` (a list per crystal) in ``processes`` forked processes, each with a
    contiguous share of the crystals, in order; with wall and CPU seconds (this process and its children).
    Forked workers inherit the loaded model and the torch thread setting."""
    import multiprocessing

    wall, cpu = time.perf_counter(), time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if processes == 1:
        out = fn(structures, **kwargs)
    else:
        bounds = [round(k * len(structures) / processes) for k in range(processes + 1)]
        jobs = [(fn, structures[a:b], kwargs) for a, b in zip(bounds, bounds[1:])]
        pool = multiprocessing.get_context("fork").Pool(processes)
        try:
            parts = pool.map(_call, jobs, chunksize=1)
            pool.close()
            pool.join()
        finally:
            pool.terminate()
        out = [item for part in parts for item in part]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return out, time.perf_counter() - wall, time.process_time() - cpu + child_cpu


def agreement(reference: list[tuple], row: list[tuple]) -> str:
    """On the crystals both relaxed (the first ones): how many end within 1e-3 eV/atom and within 0.01 Å
    RMSD of each other, and the largest energy difference."""
    import numpy as np

    from genlowdim.physics.relax import rmsd_to_relaxed

    pairs = list(zip(reference, row))
    de = np.abs(np.array([a[1] - b[1] for a, b in pairs], dtype=float))
    rmsd = [None if a[0] is None or b[0] is None else rmsd_to_relaxed(a[0], b[0]) for a, b in pairs]
    close = [r is not None and r < 0.01 for r in rmsd]
    return (f"{int(np.sum(de <= 1e-3)):3d}/{len(pairs)} within 1e-3 eV/atom, {sum(close):3d} within 0.01 Å, "
            f"largest {np.nanmax(de):.1e} eV/atom")


def filter_cost(structures, repeats: int = 50, strain: float = 0.02) -> None:
    """CPU seconds one optimiser step spends in each cell filter (no potential call): forces asked twice and
    positions once per step, as an optimiser does (``log`` and ``once`` compute the forces once), measured
    on ``structures`` whose cell has been strained by a seeded random ``strain`` after the filter was made
    (a deformation gradient away from the identity, as in mid-relaxation), with their CHGNet results held
    in a SinglePointCalculator."""
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from genlowdim.physics.potential import load_potential

    values = load_potential().evaluate(structures)
    rng = np.random.default_rng(0)
    deformations = [np.eye(3) + strain * rng.uniform(-1, 1, (3, 3)) for _ in structures]
    def steps(name: str, count: int) -> float:
        make, cpu = filter_maker(name), time.process_time()
        for s, v, d in zip(structures, values, deformations):
            atoms = AseAtomsAdaptor.get_atoms(s)
            f = make(atoms)
            atoms.set_cell(atoms.cell.array @ d, scale_atoms=True)
            atoms.calc = SinglePointCalculator(atoms, energy=v["energy"], forces=v["forces"], stress=v["stress"])
            for _ in range(count):
                f._last = f._log = None     # a new step: nothing cached from the last one
                for _ in range(2):
                    f.get_forces()
                f.get_positions()
        return (time.process_time() - cpu) / (count * len(structures))

    for name in FILTERS:     # warm-up: the first calls into scipy and ASE cost more
        steps(name, 2)
    for name in FILTERS:
        print(f"filter {name:9s}: {1e3 * steps(name, repeats):.2f} ms CPU per structure and step (2 force "
              f"requests, 1 positions request), load average {os.getloadavg()[0]:.1f}")


def pass_cost(structures, chunks=(1, 4, 8, 16, 64, 128)) -> None:
    """CPU milliseconds per structure of one CHGNet energy/forces/stress evaluation of ``structures`` (graphs
    built beforehand, not timed) in passes of each chunk size, and of CHGNet's own ``predict_graph`` one
    structure at a time (the baseline's call): what the potential alone costs per structure and step."""
    from genlowdim.physics.potential import energy_forces_stress, load_potential

    model = load_potential().model
    graphs = [model.graph_converter(s) for s in structures]
    energy_forces_stress(model, graphs[:2])
    for chunk in (c for c in chunks if c <= len(graphs)):
        cpu = time.process_time()
        for start in range(0, len(graphs), chunk):
            energy_forces_stress(model, graphs[start:start + chunk])
        print(f"one backward pass, passes of {chunk:3d}: {1e3 * (time.process_time() - cpu) / len(graphs):6.2f} ms "
              f"CPU per structure, load average {os.getloadavg()[0]:.1f}")
    cpu = time.process_time()
    for g in graphs:
        model.predict_graph([g], task="efs")
    print(f"predict_graph, one at a time:    {1e3 * (time.process_time() - cpu) / len(graphs):6.2f} ms CPU per "
          f"structure, load average {os.getloadavg()[0]:.1f}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=8, help="perov_5 crystals of --split (the first N)")
    parser.add_argument("--baseline-num", type=int, default=None,
                        help="one at a time on the first K of the N crystals only (default: all N)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--optimizer", choices=("FIRE", "BFGS"), default="BFGS")
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="lockstep batch sizes (default: all N crystals in one batch)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[None],
                        help="structures per CHGNet pass in the lockstep rows (default: load_potential's)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1],
                        help="run every row with each of these numbers of forked processes (default 1)")
    parser.add_argument("--filters", nargs="+", choices=FILTERS, default=["log", "frechet"])
    parser.add_argument("--symmetry", action="store_true", help="every method under FixSymmetry (symprec 0.1 Å)")
    parser.add_argument("--predict-graph", action="store_true", help="add the predict_graph lockstep row")
    parser.add_argument("--workers", type=int, default=None,
                        help="add the lockstep through relax_structures' own worker processes (RelaxSettings.workers)")
    parser.add_argument("--baseline-threads", type=int, default=None,
                        help="add one at a time in one process with this many torch threads")
    parser.add_argument("--filter-cost", action="store_true",
                        help="only the CPU time per step of each cell filter, without relaxing")
    parser.add_argument("--pass-cost", action="store_true",
                        help="only the CPU time per structure of CHGNet passes of several sizes, without relaxing")
    args = parser.parse_args()
    for name in ("num", "baseline_num", "threads", "workers", "baseline_threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(v is not None and v < 1 for v in (args.batch_sizes or []) + args.chunks + args.processes):
        parser.error("--batch-sizes, --chunks and --processes must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    import numpy as np
    import torch

    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.relax import RelaxSettings
    from genlowdim.structures.datasets import load_structures

    torch.set_num_threads(args.threads)
    structures = load_structures("perov_5", args.split)[1][:args.num]
    if args.filter_cost:
        return filter_cost(structures)
    if args.pass_cost:
        return pass_cost(structures)
    n = len(structures)
    k = min(args.baseline_num or n, n)
    settings = RelaxSettings(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, symmetry=args.symmetry)
    load_potential().evaluate(structures[:2])   # load and warm up outside the timings
    baseline = {}
    rows = []       # (name, processes, crystals, wall, cpu, per-crystal results, load)
    for p in args.processes:
        out, wall, cpu = split_run(one_at_a_time, structures[:k], p, settings=settings)
        baseline[p] = (wall / k, cpu / k)
        rows.append(("one at a time (CHGNetCalculator, Frechet)", p, k, wall, cpu, out, os.getloadavg()[0]))
    if args.baseline_threads:
        torch.set_num_threads(args.baseline_threads)
        out, wall, cpu = split_run(one_at_a_time, structures[:k], 1, settings=settings)
        torch.set_num_threads(args.threads)
        rows.append((f"one at a time, {args.baseline_threads} torch threads", 1, k, wall, cpu, out,
                     os.getloadavg()[0]))
    variants = [(b, name, c, None) for b in (args.batch_sizes or [n]) for c in args.chunks for name in args.filters]
    if args.predict_graph:
        variants.append(((args.batch_sizes or [n])[0], args.filters[0], args.chunks[0], chgnet_predict_graph))
    for p in args.processes:
        for b, name, c, efs in variants:
            lock_settings = dataclasses.replace(settings, batch_size=b)
            out, wall, cpu = split_run(lockstep, structures, p, settings=lock_settings, cell_filter=name, chunk=c,
                                       efs=efs)
            batch, passes = min(b, -(-n // p)), c or load_potential().batch_size
            label = (f"lockstep, batch {batch}{f' (passes of {passes})' if passes < batch else ''}, filter {name}"
                     + (", predict_graph" if efs else ""))
            rows.append((label, p, n, wall, cpu, out, os.getloadavg()[0]))
    if args.workers:
        out, wall, cpu = split_run(lockstep, structures, 1, settings=dataclasses.replace(
            settings, batch_size=(args.batch_sizes or [n])[0], workers=args.workers), cell_filter=args.filters[0])
        rows.append((f"genlowdim relax --workers {args.workers} (package's split)", 1, n, wall, cpu, out,
                     os.getloadavg()[0]))
    print(f"perov_5 {args.split} crystals (5 atoms): one at a time on the first {k}, lockstep on the first {n}; "
          f"{args.optimizer}, fmax {args.fmax} eV/Å, <= {args.steps} steps, "
          f"{'FixSymmetry (0.1 Å)' if args.symmetry else 'free cell and positions'}, {args.threads} torch "
          f"thread(s) per process; x: against one at a time with as many processes; steps: mean over the row's "
          f"crystals and over the first {k}")
    print(f"{'method':56s} {'procs':>5s} {'crystals':>8s} {'wall s/crystal':>14s} {'CPU s/crystal':>13s} "
          f"{'x wall':>6s} {'x CPU':>6s} {'steps':>6s} {f'0-{k - 1}':>6s} {'load':>5s}  agreement with the first lockstep row")
    reference = next(row[5] for row in rows if row[0].startswith("lockstep"))
    for name, p, count, wall, cpu, out, load in rows:
        w, c = wall / count, cpu / count
        print(f"{name:56s} {p:5d} {f'0-{count - 1}':>8s} {w:14.2f} {c:13.2f} {baseline[p][0] / w:6.2f} "
              f"{baseline[p][1] / c:6.2f} {np.mean([r[2] for r in out]):6.1f} {np.mean([r[2] for r in out[:k]]):6.1f} {load:5.1f}  "
              f"{agreement(reference, out)}")


if __name__ == "__main__":
    main()
