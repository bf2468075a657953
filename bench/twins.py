"""Which perov_5 polymorph does a crystal match before and after relaxation: the lower-energy entry of its
composition, its A/B twin (the other entry), or neither?

perov_5 holds, for almost every composition, two structures: the same cubic-perovskite frame with the two
cations on swapped sites, one lower in the dataset's own heat_ref. This reads a finished ``genlowdim relax``
folder (its input is read back from the folder's recorded source) and matches each structure, as given and
as relaxed, against every perov_5 entry (train, val and test) of its reduced formula with pymatgen's
StructureMatcher at CDVAE's tolerances (stol 0.5, ltol 0.3, angle_tol 10), volume scaling off and on. A
structure matching both entries counts as "lower-E" (the matcher cannot tell them apart there). Prints the
transition table (as given -> relaxed) and the shares.

Usage: python bench/twins.py RELAX_DIR [--data-dir DIR] [--out F.json]
"""
from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("GENLOWDIM_QUIET", "1")

CLASSES = ("lower-E", "twin", "neither", "no reference")


def entries_by_formula(data_dir=None) -> dict:
    """Reduced formula -> its perov_5 entries (all splits) as [(heat_ref, Structure)], lowest first."""
    from genlowdim.structures.datasets import load_records

    out: dict = {}
    for split in ("train", "val", "test"):
        for r in load_records("perov_5", split, data_dir=data_dir)[0]:
            s = r.to_structure()
            out.setdefault(s.composition.reduced_formula, []).append((float(r.properties["heat_ref"]), s))
    return {f: sorted(rows, key=lambda x: x[0]) for f, rows in out.items()}


def classify(structure, entries: dict, matcher) -> str:
    rows = entries.get(structure.composition.reduced_formula, [])
    if len(rows) < 2:
        return "no reference"
    if matcher.fit(structure, rows[0][1]):
        return "lower-E"
    return "twin" if any(matcher.fit(structure, s) for _, s in rows[1:]) else "neither"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("relax_dir")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from genlowdim.physics.cli import load_input
    from genlowdim.structures.io import read_structures

    folder = Path(args.relax_dir)
    report = json.loads((folder / "relax.json").read_text())
    ids, initial = load_input(report["source"], args.data_dir)
    relaxed = dict(read_structures(folder / "relaxed.extxyz"))
    from genlowdim.physics.folder import _unique_names

    names = _unique_names(list(ids))     # the frame names genlowdim relax gave (repeated ids get __<index>)
    entries = entries_by_formula(args.data_dir)
    result = {"relax_dir": str(folder), "num": len(initial), "settings": report["settings"]}
    print(f"{len(initial)} structures of {report['source']}; relaxed: {report['settings']['optimizer']}, fmax "
          f"{report['settings']['fmax']} eV/Å, <= {report['settings']['steps']} steps, "
          f"{report['settings']['constraint'] or 'free cell'}")
    for scale in (False, True):
        matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10, scale=scale)
        pairs = Counter()
        for k, s in enumerate(initial):
            after = relaxed.get(names[k])
            end = "failed" if after is None else classify(after, entries, matcher)
            pairs[(classify(s, entries, matcher), end)] += 1
        before = Counter({c: sum(v for (a, _), v in pairs.items() if a == c) for c in CLASSES})
        after = Counter({c: sum(v for (_, b), v in pairs.items() if b == c) for c in CLASSES + ("failed",)})
        label = "volume scaled" if scale else "unscaled"
        print(f"\nStructureMatcher {label}: as given -> relaxed (rows: as given; columns: relaxed)")
        print(f"{'':14s}" + "".join(f"{c:>14s}" for c in CLASSES + ("failed",)) + f"{'total':>8s}")
        for a in CLASSES:
            print(f"{a:14s}" + "".join(f"{pairs[(a, b)]:14d}" for b in CLASSES + ("failed",)) + f"{before[a]:8d}")
        print(f"{'relaxed total':14s}" + "".join(f"{after[c]:14d}" for c in CLASSES + ("failed",)))
        result[label] = {"as_given": dict(before), "relaxed": dict(after),
                         "transitions": {f"{a} -> {b}": v for (a, b), v in sorted(pairs.items())}}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
