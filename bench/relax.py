"""Relaxation throughput with CHGNet on 5-atom perov_5 cells: one structure at a time against the lockstep
batch, in the same run, on the same crystals, with the same optimiser; and whether a cheaper cell filter
changes the answers.

Baseline: CHGNet's own ASE calculator (``chgnet.model.dynamics.CHGNetCalculator``) on each crystal in turn,
``FrechetCellFilter`` + the ASE optimiser, ``optimizer.run(fmax, steps)``: the usual way to relax with a
universal potential. Lockstep: ``genlowdim.physics.relax.relax_structures`` with all crystals in one batch
(one batched CHGNet call per step) with each cell filter of ``--filters``: ``once`` (used: FrechetCellFilter
with its forces computed once per step), ``frechet`` (ASE's FrechetCellFilter as is, the previous path),
``unitcell`` (ASE's UnitCellFilter: no matrix logarithm); ``--predict-graph`` adds the lockstep with CHGNet's
own ``predict_graph`` (two backward passes). Wall and CPU seconds per crystal, optimiser steps, and the
agreement of each row's final energies and structures with the first lockstep row (and of one at a time
with it, the float-level spread of the same method: unstable cubic cells sit on saddles).

Usage: python bench/relax.py [--num 8] [--split test] [--optimizer BFGS] [--steps 100] [--threads 1]
       [--filters once frechet unitcell] [--symmetry] [--predict-graph] [--filter-cost]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("GENLOWDIM_QUIET", "1")


def one_at_a_time(structures, settings) -> tuple[list, list[float], list[int]]:
    """Final structures, energies per atom (eV) and steps of each crystal relaxed alone through CHGNet's ASE
    calculator (with ``FixSymmetry`` when ``settings.symmetry``)."""
    import ase.optimize
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from genlowdim.physics.potential import atoms_to_structure, load_potential

    # the calculator sets on_isolated_atoms on the shared model: keep load_potential's "error"
    calc = CHGNetCalculator(model=load_potential().model, use_device="cpu", on_isolated_atoms="error")
    final, energies, counts = [], [], []
    for s in structures:
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.calc = calc
        if settings.symmetry:
            atoms.set_constraint(FixSymmetry(atoms, symprec=settings.symprec))
        opt = getattr(ase.optimize, settings.optimizer)(FrechetCellFilter(atoms), logfile=None)
        opt.run(fmax=settings.fmax, steps=settings.steps)
        final.append(atoms_to_structure(atoms))
        energies.append(atoms.get_potential_energy() / len(atoms))
        counts.append(opt.nsteps)
    return final, energies, counts


def chgnet_predict_graph(model, graphs):
    """The previous batched call: CHGNet's own ``predict_graph`` (two backward passes with create_graph)."""
    out = model.predict_graph(graphs, task="efs", batch_size=len(graphs))
    return out if isinstance(out, list) else [out]


FILTERS = {"once": None, "frechet": "FrechetCellFilter", "unitcell": "UnitCellFilter"}


def lockstep(structures, settings, potential, cell_filter: str = "once", efs=None):
    """``relax_structures`` with the cell filter ``cell_filter`` (a key of FILTERS) and, if given, the batched
    energy/forces/stress function replaced by ``efs``."""
    import ase.filters

    import genlowdim.physics.potential as potential_module
    import genlowdim.physics.relax as relax_module

    saved = relax_module.make_filter, potential_module.energy_forces_stress
    if FILTERS[cell_filter] is not None:
        relax_module.make_filter = getattr(ase.filters, FILTERS[cell_filter])
    potential_module.energy_forces_stress = efs or saved[1]
    try:
        return relax_module.relax_structures(structures, settings, potential)
    finally:
        relax_module.make_filter, potential_module.energy_forces_stress = saved


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def agreement(final_a, energies_a, final_b, energies_b) -> str:
    """How many crystals end within 1e-3 eV/atom and within 0.01 Å RMSD of each other, and the largest
    energy difference."""
    import numpy as np

    from genlowdim.physics.relax import rmsd_to_relaxed

    de = np.abs(np.subtract(energies_a, energies_b, dtype=float))
    rmsd = [None if a is None or b is None else rmsd_to_relaxed(a, b) for a, b in zip(final_a, final_b)]
    close = [r is not None and r < 0.01 for r in rmsd]
    return (f"{int(np.sum(de <= 1e-3)):3d} within 1e-3 eV/atom, {sum(close):3d} within 0.01 Å, largest "
            f"{np.nanmax(de):.1e} eV/atom")


def filter_cost(structures, repeats: int = 50) -> None:
    """CPU seconds one optimiser step spends in each cell filter (no potential call): forces asked twice and
    positions once per step (ASE's filters), forces once (``once``), measured on ``structures`` with their
    CHGNet results held in a SinglePointCalculator."""
    import ase.filters
    from ase.calculators.singlepoint import SinglePointCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.relax import make_filter

    values = load_potential().evaluate(structures)
    makers = {"frechet": (ase.filters.FrechetCellFilter, 2), "once": (make_filter, 2),
              "unitcell": (ase.filters.UnitCellFilter, 2)}
    for name, (make, asks) in makers.items():
        cpu = time.process_time()
        for s, v in zip(structures, values):
            atoms = AseAtomsAdaptor.get_atoms(s)
            atoms.calc = SinglePointCalculator(atoms, energy=v["energy"], forces=v["forces"], stress=v["stress"])
            f = make(atoms)
            for _ in range(repeats):
                f._last = None          # a new step: the once filter computes its forces again
                for _ in range(asks):
                    f.get_forces()
                f.get_positions()
        per_step = (time.process_time() - cpu) / (repeats * len(structures))
        print(f"filter {name:9s}: {1e3 * per_step:.2f} ms CPU per structure and step ({asks} force requests, "
              f"1 positions request)")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=8, help="perov_5 crystals of --split (the first N)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--optimizer", choices=("FIRE", "BFGS"), default="BFGS")
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--filters", nargs="+", choices=tuple(FILTERS), default=["once", "frechet"])
    parser.add_argument("--symmetry", action="store_true", help="every method under FixSymmetry (symprec 0.1 Å)")
    parser.add_argument("--predict-graph", action="store_true", help="add the predict_graph lockstep row")
    parser.add_argument("--filter-cost", action="store_true",
                        help="only the CPU time per step of each cell filter, without relaxing")
    return parser.parse_args()


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
    n, potential = len(structures), load_potential()
    settings = RelaxSettings(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, batch_size=n,
                             symmetry=args.symmetry)
    potential.evaluate(structures[:2])   # warm-up outside the timings
    (f_one, e_one, n_one), wall_one, cpu_one = timed(one_at_a_time, structures, settings)
    rows = [("one at a time (CHGNetCalculator, Frechet)", wall_one, cpu_one, np.mean(n_one), f_one, e_one)]
    variants = [(f"lockstep {n}, filter {name}", dict(cell_filter=name)) for name in args.filters]
    if args.predict_graph:
        variants.append((f"lockstep {n}, predict_graph", dict(efs=chgnet_predict_graph)))
    for name, kwargs in variants:
        results, wall, cpu = timed(lockstep, structures, settings, potential, **kwargs)
        rows.append((name, wall, cpu, np.mean([r.steps for r in results]), [r.relaxed for r in results],
                     [np.nan if r.energy_final is None else r.energy_final for r in results]))
    print(f"{n} perov_5 {args.split} crystals (5 atoms), {args.optimizer}, fmax {args.fmax} eV/Å, <= {args.steps} "
          f"steps, {'FixSymmetry (0.1 Å)' if args.symmetry else 'free cell and positions'}, {args.threads} torch "
          f"thread(s), load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':42s} {'wall s/crystal':>14s} {'CPU s/crystal':>13s} {'x wall':>7s} {'x CPU':>6s} "
          f"{'steps':>6s}  agreement with row 2")
    for name, wall, cpu, steps, final, energies in rows:
        print(f"{name:42s} {wall / n:14.2f} {cpu / n:13.2f} {wall_one / wall:7.2f} {cpu_one / cpu:6.2f} "
              f"{steps:6.1f}  {agreement(rows[1][4], rows[1][5], final, energies)}")


if __name__ == "__main__":
    main()
