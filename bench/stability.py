"""Stability figures of the perov_5 test crystals themselves (the ceiling a generator is compared with), or
of a sample folder: RMSD to the CHGNet-relaxed structure, energy W1 against the reference entries, share
stable among the known polymorphs of each composition (all perov_5 splits, relaxed the same way) and the
S.U.N.-style rate (uniqueness and novelty against perov_5 train with CDVAE's matcher tolerances).

Usage: python bench/stability.py [--num 20] [--input SAMPLES] [--optimizer BFGS] [--steps 100] [--out F.json]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("GENLOWDIM_QUIET", "1")


def flags(structures) -> tuple[list[bool], list[bool]]:
    """Unique (first of its duplicates) and novel (no match in perov_5 train) per structure."""
    from genlowdim.metrics.matching import novelty, uniqueness
    from genlowdim.structures.datasets import load_structures

    unique = uniqueness(structures).per_item["duplicate_of"] < 0
    novel = novelty(structures, load_structures("perov_5", "train")[1]).per_item["novel"]
    return unique.tolist(), novel.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=20, help="the first N structures")
    parser.add_argument("--input", default="perov_5:test", help="structures (default: the perov_5 test split)")
    parser.add_argument("--optimizer", choices=("FIRE", "BFGS"), default="BFGS")
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the block as JSON here")
    args = parser.parse_args()

    import torch

    from genlowdim.physics.cli import load_input
    from genlowdim.physics.relax import RelaxSettings
    from genlowdim.physics.stability import stability_block
    from genlowdim.runtime import write_json

    torch.set_num_threads(args.threads)
    structures = load_input(args.input)[1][:args.num]
    settings = RelaxSettings(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, batch_size=64)
    unique, novel = flags(structures)
    wall = time.perf_counter()
    block = stability_block(structures, unique=unique, novel=novel, settings=settings)
    wall = time.perf_counter() - wall
    if args.out:
        write_json(args.out, block)
    r, st, sun = block["rmsd_within"]["params"], block["stable"], block["sun"]
    print(f"{args.input}, first {len(structures)}; {args.optimizer} fmax {args.fmax} eV/Å <= {args.steps} steps; "
          f"{wall:.0f} s wall incl. references; load average {os.getloadavg()[0]:.1f}")
    print(f"RMSD to relaxed: mean {r['mean_angstrom']:.3f} Å, median {r['median_angstrom']:.3f} Å, "
          f"within 0.1 Å {100 * block['rmsd_within']['value']:.1f}% ({r['num_with_rmsd']} matched)")
    print(f"energy W1 vs reference entries {block['energy_w1']['value']:.3f} eV/atom; stable (<= 0.1 eV/atom above "
          f"lowest known polymorph) {100 * st['value']:.1f}%; S.U.N.-style {100 * sun['value']:.1f}%; "
          f"no reference {st['params']['num_no_reference']}; reference entries {st['params']['reference']['entries_used']}")


if __name__ == "__main__":
    main()
