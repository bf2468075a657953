"""Does relaxation pick the right A/B twin? Scores a ``genlowdim csp --split SPLIT --relax`` folder.

For each formula of the folder's ``truth.extxyz``, the top-ranked candidate, unrelaxed (``predictions.extxyz``,
formula-NLL order) and relaxed (``relaxed/predictions.extxyz``, relaxed-energy order), is compared with the
**lower-energy** perov_5 entry of its reduced formula (lowest heat_ref over train, val and test): the share
that matches (pymatgen StructureMatcher, stol 0.5, ltol 0.3, angle_tol 10) with volume scaling on and off,
and the relative error of the volume per atom (median and mean of |error|).

Usage: python bench/csp_relax.py OUT [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("GENLOWDIM_QUIET", "1")


def lowest_entries(formulas: set[str], data_dir=None) -> dict:
    """Reduced formula -> (heat_ref, Structure) of its lowest-heat_ref perov_5 entry over all splits."""
    from genlowdim.structures.datasets import load_records

    best: dict = {}
    for split in ("train", "val", "test"):
        for r in load_records("perov_5", split, data_dir=data_dir)[0]:
            s = r.to_structure()
            f, heat = s.composition.reduced_formula, float(r.properties["heat_ref"])
            if f in formulas and (f not in best or heat < best[f][0]):
                best[f] = (heat, s)
    return best


def top_per_id(path: Path) -> dict:
    from genlowdim.structures.io import read_structures

    top: dict = {}
    for i, s in read_structures(path):
        top.setdefault(i, s)
    return top


def score(top: dict, truth_ids, best: dict) -> dict:
    import numpy as np
    from pymatgen.analysis.structure_matcher import StructureMatcher

    scaled, unscaled = (StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10, scale=v) for v in (True, False))
    rows = []
    for i in truth_ids:
        s = top[i]
        _, ref = best[s.composition.reduced_formula]
        rows.append((scaled.fit(s, ref), unscaled.fit(s, ref),
                     abs(s.volume / len(s) / (ref.volume / len(ref)) - 1)))
    m = np.array(rows, dtype=float)
    return {"match_scaled": m[:, 0].mean(), "match_unscaled": m[:, 1].mean(),
            "vol_err_median": float(np.median(m[:, 2])), "vol_err_mean": float(m[:, 2].mean()), "n": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    from genlowdim.structures.io import read_structures

    out = Path(args.out)
    truth = read_structures(out / "truth.extxyz")
    ids = [i for i, _ in truth]
    best = lowest_entries({s.composition.reduced_formula for _, s in truth}, args.data_dir)
    print(f"{len(ids)} formulas; reference: lowest-heat_ref perov_5 entry of each formula (all splits)")
    print(f"{'ranking':32s} {'match (scaled)':>15s} {'match (unscaled)':>17s} {'|dV/V| median':>14s} {'mean':>7s}")
    for name, path in (("formula NLL, unrelaxed", out / "predictions.extxyz"),
                       ("relaxed energy, relaxed", out / "relaxed" / "predictions.extxyz")):
        r = score(top_per_id(path), ids, best)
        print(f"{name:32s} {r['match_scaled']:15.1%} {r['match_unscaled']:17.1%} {r['vol_err_median']:14.1%} "
              f"{r['vol_err_mean']:7.1%}")


if __name__ == "__main__":
    main()
