"""Local geometry of crystals against a reference set: per cell the shortest interatomic distance and the
number of neighbours under ``--bond`` Å per atom (ASE neighbour list), and with ``--energy N`` CHGNet's energy
per atom of the first N cells of each set, unrelaxed. The numbers behind docs/cdvae.md's carbon bond-length
table (generated carbon_24 cells against the held-out val cells).

Every input is anything ``genlowdim relax`` reads: a sample folder, extxyz, CIF folder, CDVAE CSV, name:split.

Usage: python bench/carbon_geometry.py REFERENCE INPUT [INPUT ...] [--num 200] [--bond 1.75] [--energy 64]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("GENLOWDIM_QUIET", "1")


def geometry(structures, bond: float) -> tuple[np.ndarray, np.ndarray]:
    """(shortest distance in Å, neighbours under ``bond`` Å per atom) of each structure."""
    from ase.neighborlist import neighbor_list
    from pymatgen.io.ase import AseAtomsAdaptor

    shortest, bonds = [], []
    for s in structures:
        atoms = AseAtomsAdaptor.get_atoms(s)
        i, d = neighbor_list("id", atoms, max(3.0, bond))
        shortest.append(d.min() if len(d) else np.nan)
        bonds.append(np.count_nonzero(d < bond) / len(atoms))
    return np.array(shortest), np.array(bonds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--num", type=int, default=200, help="the first N cells of each set (200)")
    p.add_argument("--bond", type=float, default=1.75, help="bond cutoff, Å (1.75: C-C single bonds and shorter)")
    p.add_argument("--energy", type=int, default=0, help="CHGNet energy of the first N cells of each set (0: none)")
    args = p.parse_args()
    from genlowdim.physics.cli import load_input

    potential = None
    if args.energy:
        import torch

        from genlowdim.physics.potential import load_potential

        torch.set_num_threads(1)
        potential = load_potential()
    print(f"{'set':48s} {'cells':>5s}  shortest median (p10 / p90)   bonds/atom  energy median (eV/atom)")
    for spec in [args.reference, *args.inputs]:
        structures = load_input(spec)[1][:args.num]
        shortest, bonds = geometry(structures, args.bond)
        energy = ""
        if potential is not None:
            values = potential.evaluate(structures[:args.energy])
            e = [v["energy_per_atom"] for v in values if isinstance(v, dict)]
            energy = f"{np.median(e):.2f} ({len(e)} cells)"
        print(f"{spec[-48:]:48s} {len(structures):5d}  {np.nanmedian(shortest):.3f} Å ({np.nanpercentile(shortest, 10):.3f}"
              f" / {np.nanpercentile(shortest, 90):.3f})   {bonds.mean():10.2f}  {energy}")


if __name__ == "__main__":
    main()
