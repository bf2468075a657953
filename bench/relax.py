"""Relaxation throughput with CHGNet on 5-atom perov_5 cells: one structure at a time against the lockstep
batch, in the same run, on the same crystals, with the same optimiser and filter.

Baseline: CHGNet's own ASE calculator (``chgnet.model.dynamics.CHGNetCalculator``) on each crystal in turn,
``FrechetCellFilter`` + the ASE optimiser, ``optimizer.run(fmax, steps)``: the usual way to relax with a
universal potential. Lockstep: ``genlowdim.physics.relax.relax_structures`` with all crystals in one batch
(one batched CHGNet call per step), once with the single backward pass it uses and once with CHGNet's own
``predict_graph`` (the previous path). Wall and CPU seconds per crystal, optimiser steps, and the largest
difference of the final energies between the two.

Usage: python bench/relax.py [--num 8] [--optimizer BFGS] [--steps 100] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("GENLOWDIM_QUIET", "1")


def one_at_a_time(structures, optimizer: str, fmax: float, steps: int) -> tuple[list[float], list[int]]:
    """Final energy per atom (eV) and steps of each crystal relaxed alone through CHGNet's ASE calculator."""
    import ase.optimize
    from ase.filters import FrechetCellFilter
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from genlowdim.physics.potential import load_potential

    calc = CHGNetCalculator(model=load_potential().model, use_device="cpu")
    energies, counts = [], []
    for s in structures:
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.calc = calc
        opt = getattr(ase.optimize, optimizer)(FrechetCellFilter(atoms), logfile=None)
        opt.run(fmax=fmax, steps=steps)
        energies.append(atoms.get_potential_energy() / len(atoms))
        counts.append(opt.nsteps)
    return energies, counts


def chgnet_predict_graph(model, graphs):
    """The previous batched call: CHGNet's own ``predict_graph`` (two backward passes with create_graph)."""
    out = model.predict_graph(graphs, task="efs", batch_size=len(graphs))
    return out if isinstance(out, list) else [out]


def lockstep_with(efs, structures, settings, potential):
    """``relax_structures`` with the batched energy/forces/stress function replaced by ``efs``."""
    import genlowdim.physics.potential as module
    from genlowdim.physics.relax import relax_structures

    saved, module.energy_forces_stress = module.energy_forces_stress, efs
    try:
        return relax_structures(structures, settings, potential)
    finally:
        module.energy_forces_stress = saved


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=8, help="perov_5 test crystals (the first N)")
    parser.add_argument("--optimizer", choices=("FIRE", "BFGS"), default="BFGS")
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.relax import RelaxSettings, relax_structures
    from genlowdim.structures.datasets import load_structures

    torch.set_num_threads(args.threads)
    structures = load_structures("perov_5", "test")[1][:args.num]
    potential = load_potential()
    potential.evaluate(structures[:2])   # warm-up outside the timings
    (e_one, n_one), wall_one, cpu_one = timed(one_at_a_time, structures, args.optimizer, args.fmax, args.steps)
    settings = RelaxSettings(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, batch_size=len(structures))
    results, wall_b, cpu_b = timed(relax_structures, structures, settings, potential)
    old, wall_o, cpu_o = timed(lockstep_with, chgnet_predict_graph, structures, settings, potential)
    n = len(structures)
    print(f"{n} perov_5 test crystals (5 atoms), {args.optimizer}, fmax {args.fmax} eV/Å, <= {args.steps} steps, "
          f"{args.threads} torch thread(s), load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':44s} {'wall s/crystal':>15s} {'CPU s/crystal':>14s} {'mean steps':>11s}")
    rows = [("one at a time (CHGNetCalculator)", wall_one, cpu_one, np.mean(n_one)),
            (f"lockstep batch of {n}, CHGNet predict_graph", wall_o, cpu_o, np.mean([r.steps for r in old])),
            (f"lockstep batch of {n}, one backward pass", wall_b, cpu_b, np.mean([r.steps for r in results]))]
    for name, wall, cpu, steps in rows:
        print(f"{name:44s} {wall / n:15.2f} {cpu / n:14.2f} {steps:11.1f}")
    e_b, e_o = [r.energy_final for r in results], [r.energy_final for r in old]
    print(f"speed-up against one at a time: {wall_one / wall_b:.2f}x wall, {cpu_one / cpu_b:.2f}x CPU "
          f"(predict_graph lockstep: {wall_one / wall_o:.2f}x wall, {cpu_one / cpu_o:.2f}x CPU)")
    print(f"largest final-energy difference to one at a time {_largest(e_one, e_b):.2e} eV/atom; crystals "
          f"within 1e-3 eV/atom of it: {_within(e_one, e_b)} of {n} (predict_graph lockstep: {_within(e_one, e_o)})")


def _largest(a, b) -> float:
    import numpy as np

    return float(np.nanmax(np.abs(np.subtract(a, b, dtype=float))))


def _within(a, b, tol: float = 1e-3) -> int:
    import numpy as np

    return int(np.sum(np.abs(np.subtract(a, b, dtype=float)) <= tol))

if __name__ == "__main__":
    main()
