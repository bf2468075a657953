"""BFGS with another starting Hessian for the cell: how many steps it saves and whether each crystal ends in
the same minimum as ASE's BFGS (alpha = 70 eV/Å² everywhere). Each variant is ``ATOMS,CELL,MAXSTEP``: the
starting curvature of the atoms' rows and of the Fréchet filter's nine cell rows (eV/Å²), and the largest step
(Å). Lockstep relaxation (``genlowdim.physics.relax``), fmax 0.05 eV/Å, at most 100 steps, one thread; "same
minimum": StructureMatcher at stol 0.05, ltol 0.02, 1° without scaling. The table in docs/physics.md.

Usage: python bench/bfgs_start.py [--num 64] [--split val] [70,10,0.2 70,3,0.2 30,10,0.2]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("GENLOWDIM_QUIET", "1")


def bfgs_with_start(alpha_atoms: float, alpha_cell: float, maxstep: float):
    """ASE's BFGS class with a diagonal starting Hessian: ``alpha_cell`` on the last nine rows (the cell)."""
    import ase.optimize

    class StartedBFGS(ase.optimize.BFGS):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("maxstep", maxstep)
            super().__init__(*args, **kwargs)

        def initialize(self):
            super().initialize()
            diagonal = np.full(self.optimizable.ndofs(), alpha_atoms)
            diagonal[-9:] = alpha_cell
            self.H0 = np.diag(diagonal)

    return StartedBFGS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", default=["70,10,0.2", "70,3,0.2", "30,10,0.2"])
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    args = p.parse_args()
    import ase.optimize
    import torch
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.relax import RelaxSettings, relax_structures
    from genlowdim.structures.datasets import load_structures

    torch.set_num_threads(1)
    structures = load_structures("perov_5", args.split)[1][:args.num]
    potential, settings = load_potential(), RelaxSettings(optimizer="BFGS", fmax=0.05, steps=100,
                                                          batch_size=len(structures))
    matcher = StructureMatcher(stol=0.05, ltol=0.02, angle_tol=1, scale=False, primitive_cell=False)
    reference = relax_structures(structures, settings, potential)
    print(f"perov_5 {args.split}, first {len(structures)}, BFGS fmax 0.05 eV/Å, <= 100 steps")
    print(f"{'atoms/cell/maxstep':>20s} {'steps mean':>10s} {'median':>6s} {'converged':>9s} {'same min':>8s}"
          f" {'lower':>6s} {'higher':>6s}  (lower/higher: final energy > 1 meV/atom from alpha = 70's)")

    def row(label, results):
        steps = np.array([r.steps for r in results])
        pairs = [(r, q) for r, q in zip(results, reference) if r.relaxed and q.relaxed]
        same = np.mean([matcher.fit(r.relaxed, q.relaxed) for r, q in pairs])
        lower = np.mean([r.energy_final < q.energy_final - 1e-3 for r, q in pairs])
        higher = np.mean([r.energy_final > q.energy_final + 1e-3 for r, q in pairs])
        converged = np.mean([r.converged for r in results])
        print(f"{label:>20s} {steps.mean():10.1f} {np.median(steps):6.0f} {converged:9.0%} {same:8.0%}"
              f" {lower:6.0%} {higher:6.0%}")

    row("70/70/0.2 (ASE)", reference)
    original = ase.optimize.BFGS
    for spec in args.variants:
        alpha_atoms, alpha_cell, maxstep = (float(v) for v in spec.split(","))
        ase.optimize.BFGS = bfgs_with_start(alpha_atoms, alpha_cell, maxstep)
        try:
            row(f"{alpha_atoms:g}/{alpha_cell:g}/{maxstep:g}", relax_structures(structures, settings, potential))
        finally:
            ase.optimize.BFGS = original


if __name__ == "__main__":
    main()
