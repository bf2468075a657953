"""Which offline universal potential agrees best with perov_5's DFT: CHGNet 0.3.0 (the package's) against
SevenNet-0 (the ``sevenn`` wheel's weights, when that package is installed: ``pip install sevenn``).

Both potentials run through the same code: ``genlowdim.physics.relax.relax_structures`` (FIRE, fmax 0.05 eV/Å,
at most ``--steps`` steps, ``FrechetCellFilter``, ``FixSymmetry`` at ``--symprec`` Å unless ``--free``), the
protocol of the "ceiling" rows in docs/physics.md. CHGNet is evaluated in its batched passes, SevenNet one
structure at a time through its ASE calculator. For the first ``--num`` val formulas that have two perov_5
entries (all splits), both entries are relaxed, and per potential the bench prints:

- **twin order**: the share of formulas whose lower relaxed energy belongs to the lower-heat_ref entry (the
  most a ranking by that potential's energy can agree with the dataset);
- **volume**: the relative change of the volume per atom of the lower-heat_ref entries, relaxed from their
  own dataset cells: median and mean of its size, and its signed mean (the potential's bias);
- **own cell**: the share of those relaxed entries that still match their dataset cell with volume scaling
  off (pymatgen StructureMatcher, CDVAE's tolerances stol 0.5, ltol 0.3, angle_tol 10);
- CPU seconds per structure (this process) and mean steps.

Results go to ``--out`` (one JSON per potential, written when its relaxations end; a rerun with the same
settings reads them back instead of relaxing again).

Usage: python bench/potentials.py [--num 100] [--potentials chgnet sevennet] [--free] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GENLOWDIM_QUIET", "1")


class SevenNetPotential:
    """SevenNet-0 behind the interface ``relax_structures`` expects of a potential: ``evaluate(structures)``
    gives per structure energy (eV), energy per atom, forces (eV/Å) and stress (3×3 eV/Å³, ASE's sign), or the
    exception that made it fail."""

    name = "SevenNet-0"

    def __init__(self, model: str = "7net-0"):
        from sevenn.calculator import SevenNetCalculator

        self.calc = SevenNetCalculator(model=model, device="cpu")

    def evaluate(self, structures) -> list:
        from ase.stress import voigt_6_to_full_3x3_stress
        from pymatgen.io.ase import AseAtomsAdaptor

        out = []
        for s in structures:
            try:
                atoms = AseAtomsAdaptor.get_atoms(s)
                atoms.calc = self.calc
                e = float(atoms.get_potential_energy())
                f = np.asarray(atoms.get_forces(), float)
                st = voigt_6_to_full_3x3_stress(atoms.get_stress())
                if not (np.isfinite(e) and np.isfinite(f).all() and np.isfinite(st).all()):
                    raise FloatingPointError("non-finite energy, force or stress")
                out.append({"energy": e, "energy_per_atom": e / len(s), "forces": f, "stress": st})
            except Exception as err:  # noqa: BLE001 - one structure fails alone
                out.append(err)
        return out


def formula_pairs(num: int, data_dir=None) -> list[tuple[str, list]]:
    """The first ``num`` val formulas (in val order) with two perov_5 entries: (formula, [(heat_ref,
    Structure) lower first, the twin])."""
    from twins import entries_by_formula   # bench/twins.py, beside this script

    from genlowdim.structures.datasets import load_records

    entries = entries_by_formula(data_dir)
    seen, out = set(), []
    for r in load_records("perov_5", "val", data_dir=data_dir)[0]:
        f = r.to_structure().composition.reduced_formula
        if f in seen:
            continue
        seen.add(f)
        if len(entries.get(f, [])) >= 2:
            out.append((f, entries[f][:2]))
        if len(seen) == num:
            break
    return out


def relax_with(name: str, structures: list, settings) -> tuple[list, float, float]:
    """(results, CPU seconds, wall seconds) of relaxing ``structures`` with the potential ``name``."""
    from genlowdim.physics.relax import relax_structures

    potential = None
    if name == "sevennet":
        potential = SevenNetPotential()
    cpu, wall = time.process_time(), time.perf_counter()
    results = relax_structures(structures, settings, potential=potential)
    return results, time.process_time() - cpu, time.perf_counter() - wall


def summarise(pairs: list, results: list) -> dict:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10, scale=False)
    order, dv, own, failed = [], [], [], 0
    for k, (_, rows) in enumerate(pairs):
        low, twin = results[2 * k], results[2 * k + 1]
        if low.error is not None or twin.error is not None:
            failed += 1
            continue
        order.append(low.energy_final < twin.energy_final)
        start = rows[0][1]
        dv.append(low.relaxed.volume / start.volume - 1.0)
        own.append(bool(matcher.fit(low.relaxed, start)))
    dv = np.array(dv)
    return {"formulas": len(pairs), "failed": failed, "twin_order": float(np.mean(order)),
            "volume_median": float(np.median(np.abs(dv))), "volume_mean": float(np.mean(np.abs(dv))),
            "volume_signed_mean": float(dv.mean()), "own_cell_unscaled": float(np.mean(own)),
            "steps_mean": float(np.mean([r.steps for r in results if r.steps is not None]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=100, help="val formulas looked at (default 100)")
    parser.add_argument("--potentials", nargs="+", choices=("chgnet", "sevennet"), default=["chgnet", "sevennet"])
    parser.add_argument("--free", action="store_true", help="relax without FixSymmetry")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--symprec", type=float, default=0.1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/bench_potentials")
    args = parser.parse_args()
    import torch

    from genlowdim.physics.relax import RelaxSettings

    torch.set_num_threads(1)
    settings = RelaxSettings(steps=args.steps, symmetry=not args.free, symprec=args.symprec)
    pairs = formula_pairs(args.num, args.data_dir)
    structures = [s for _, rows in pairs for _, s in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(pairs)} of the first {args.num} val formulas have two perov_5 entries; {len(structures)} "
          f"relaxations per potential; FIRE, fmax {settings.fmax} eV/Å, <= {settings.steps} steps, "
          f"{'free cell' if args.free else f'FixSymmetry {settings.symprec} Å'}; one torch thread")
    print(f"{'potential':10s} {'twin order':>10s} {'|dV/V| med / mean':>18s} {'signed':>7s} {'own cell':>9s} "
          f"{'failed':>7s} {'steps':>6s} {'CPU s/str':>10s} {'wall s/str':>11s} {'load':>5s}")
    for name in args.potentials:
        record = out / f"{name}_{'free' if args.free else f'sym{settings.symprec:g}'}_{args.num}.json"
        if record.is_file() and json.loads(record.read_text())["settings"] == settings.to_dict():
            row = json.loads(record.read_text())
        else:
            results, cpu, wall = relax_with(name, structures, settings)
            row = {"settings": settings.to_dict(), **summarise(pairs, results),
                   "cpu_per_structure": cpu / len(structures), "wall_per_structure": wall / len(structures),
                   "load": os.getloadavg()[0]}
            record.write_text(json.dumps(row, indent=1))
        print(f"{name:10s} {row['twin_order']:10.1%} {row['volume_median']:9.1%} / {row['volume_mean']:5.1%} "
              f"{row['volume_signed_mean']:+7.1%} {row['own_cell_unscaled']:9.0%} {row['failed']:7d} "
              f"{row['steps_mean']:6.1f} {row['cpu_per_structure']:10.2f} {row['wall_per_structure']:11.2f} "
              f"{row['load']:5.1f}")


if __name__ == "__main__":
    main()
