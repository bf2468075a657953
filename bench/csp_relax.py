"""Does relaxation pick the right A/B twin? Scores a ``genlowdim csp --split SPLIT`` folder before and after
relaxation, free and symmetry-preserving.

For each formula of the folder's ``truth.extxyz``, the top-ranked candidate, unrelaxed (``predictions.extxyz``,
formula-NLL order) and relaxed (relaxed-energy order), is compared with the split's own structure of that
formula (the truth) and with the **lower-energy** perov_5 entry of its reduced formula (lowest heat_ref over
train, val and test): the share that matches (pymatgen StructureMatcher with CDVAE's tolerances, stol 0.5,
ltol 0.3, angle_tol 10; against the lower-energy entry with volume scaling on and off), the relative error of
the volume per atom against each (median and mean of |error|), and the share of top candidates whose space
group at ``--symprec`` is the one they had as decoded (a relaxed candidate is compared with its own start).

``--relax MODE ...`` relaxes the folder's candidates with each mode (``free``: cell and positions;
``symmetric``: the same under ASE's ``FixSymmetry`` at ``--symprec``) into ``OUT/relax_free/`` or
``OUT/relax_symmetric_<symprec>/`` (kept: a
rerun with the same settings only scores) and times it; each is scored ranked by relaxed energy alone and
by arrangement (``csp --relax --rank arrangement``, point groups at 0.1 Å); a ``relaxed/`` folder written
by ``csp --relax`` is scored as well.

Usage: python bench/csp_relax.py OUT [--relax free symmetric] [--steps 200] [--symprec 0.1] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("GENLOWDIM_QUIET", "1")


def lowest_entries(formulas: set[str], data_dir=None) -> dict:
    """Reduced formula -> (heat_ref, Structure) of its lowest-heat_ref perov_5 entry over all splits."""
    from twins import entries_by_formula   # bench/twins.py, beside this script

    return {f: rows[0] for f, rows in entries_by_formula(data_dir).items() if f in formulas}


def top_per_id(path: Path) -> tuple[dict, dict]:
    """(id -> its first structure in ``path``, id -> that frame's model rank: ``nll_rank`` of a relaxed file,
    ``rank`` of a decoded one, 0 when neither is written)."""
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    top, rank = {}, {}
    for atoms in read(path, index=":"):
        i = str(atoms.info["material_id"])
        if i not in top:
            top[i] = AseAtomsAdaptor.get_structure(atoms)
            rank[i] = int(atoms.info.get("nll_rank", atoms.info.get("rank", 0)))
    return top, rank


def top_by_arrangement(path: Path, symprec: float = 0.1) -> tuple[dict, dict]:
    """Like :func:`top_per_id`, with each formula's candidates (a relaxed file: every candidate with its
    ``energy_per_atom``) re-ranked as ``csp --relax --rank arrangement`` ranks them."""
    import math

    from ase.io import read
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    from genlowdim.physics.ranking import rank_by_arrangement
    from genlowdim.structures.symmetry import point_group_order

    groups: dict = {}
    for atoms in read(path, index=":"):
        e = float(atoms.info["energy_per_atom"])
        groups.setdefault(str(atoms.info["material_id"]), []).append(
            (AseAtomsAdaptor.get_structure(atoms), None if math.isnan(e) else e, int(atoms.info["nll_rank"])))
    matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10, scale=False)
    top, rank = {}, {}
    for i, rows in groups.items():
        rows.sort(key=lambda r: r[2])      # the model's order, as relax_candidates sees them
        cells = [r[0] for r in rows]
        first = rank_by_arrangement([r[1] for r in rows], [point_group_order(c, symprec) for c in cells],
                                    lambda a, b: matcher.fit(cells[a], cells[b]))[0]
        top[i], rank[i] = cells[first], rows[first][2]
    return top, rank


def decoded_by_rank(path: Path) -> dict:
    """(id, model rank) -> decoded candidate of ``predictions.extxyz``."""
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    return {(str(a.info["material_id"]), int(a.info["rank"])): AseAtomsAdaptor.get_structure(a)
            for a in read(path, index=":")}


def _volume_error(s, ref) -> float:
    return abs(s.volume / len(s) / (ref.volume / len(ref)) - 1)


def score(top: dict, truth: dict, best: dict, before: dict, symprec: float) -> dict:
    """Shares and volume errors of the top candidates ``top`` (id -> Structure) against ``truth`` (id ->
    Structure) and the lower-energy entries ``best``; ``before``: each top candidate as decoded."""
    import numpy as np
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from genlowdim.physics.relax import space_group_number

    scaled, unscaled = (StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10, scale=v) for v in (True, False))
    rows = []
    for i, t in truth.items():
        s, ref = top[i], best[truth[i].composition.reduced_formula][1]
        rows.append((scaled.fit(s, t), scaled.fit(s, ref), unscaled.fit(s, ref), _volume_error(s, t),
                     _volume_error(s, ref),
                     space_group_number(s, symprec) == space_group_number(before[i], symprec)))
    m = np.array(rows, dtype=float)
    return {"match_truth": m[:, 0].mean(), "match_scaled": m[:, 1].mean(), "match_unscaled": m[:, 2].mean(),
            "vol_truth_median": float(np.median(m[:, 3])), "vol_truth_mean": float(m[:, 3].mean()),
            "vol_median": float(np.median(m[:, 4])), "vol_mean": float(m[:, 4].mean()),
            "same_group": m[:, 5].mean(), "n": len(rows)}


def relax_mode(out: Path, mode: str, steps: int, symprec: float, source: str = "predictions.extxyz") -> Path:
    """Relax ``out/source`` with ``mode`` into its own folder under ``out`` and return the relaxed file (an
    earlier run with the same settings is reused)."""
    from genlowdim.crystal.tasks.csp_relax import relax_candidates
    from genlowdim.physics.relax import RelaxSettings

    settings = RelaxSettings(steps=steps, symmetry=mode == "symmetric", symprec=symprec)
    work = out / (f"relax_{mode}" if mode == "free" else f"relax_{mode}_{symprec:g}")
    work = work.with_name(work.name + ("_truth" if source == "truth.extxyz" else ""))
    relaxed, manifest = work / "relaxed" / source, work / "manifest.json"
    if relaxed.is_file() and manifest.is_file() and \
            json.loads(manifest.read_text()).get("relax", {}).get("settings") == settings.to_dict():
        return relaxed
    work.mkdir(exist_ok=True)
    shutil.copy(out / source, work / source)
    start = time.perf_counter()
    record = relax_candidates(work, source, ranked_ids=False, settings=settings, symprec=symprec)
    steps_mean = sum(row["steps"] for row in record["candidates"]) / len(record["candidates"])
    print(f"  {work.name}: {len(record['candidates'])} structures relaxed in {time.perf_counter() - start:.0f} s "
          f"wall, {steps_mean:.0f} FIRE steps on average ({record['num_converged']} converged, "
          f"{record['num_failed']} failed)")
    return relaxed


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--relax", nargs="*", choices=("free", "symmetric"), default=[])
    parser.add_argument("--ceiling", action="store_true",
                        help="also relax the truths themselves with each --relax mode and score them alike")
    parser.add_argument("--steps", type=int, default=200, help="FIRE steps at most (fmax 0.05 eV/Å)")
    parser.add_argument("--symprec", type=float, default=0.1, help="Å: FixSymmetry's and the space groups'")
    parser.add_argument("--data-dir", default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from genlowdim.structures.io import read_structures

    out = Path(args.out)
    truth = dict(read_structures(out / "truth.extxyz"))
    best = lowest_entries({s.composition.reduced_formula for s in truth.values()}, args.data_dir)
    decoded = decoded_by_rank(out / "predictions.extxyz")
    rows = [("formula NLL, unrelaxed", out / "predictions.extxyz", decoded)]
    if (out / "relaxed" / "predictions.extxyz").is_file():
        rows.append(("csp --relax folder, relaxed", out / "relaxed" / "predictions.extxyz", decoded))
    for mode in args.relax:
        relaxed = relax_mode(out, mode, args.steps, args.symprec)
        rows.append((f"relaxed energy, {mode}", relaxed, decoded))
        rows.append((f"by arrangement, {mode}", (relaxed, "arrangement"), decoded))
    for mode in args.relax if args.ceiling else []:
        rows.append((f"truth itself, {mode}", relax_mode(out, mode, args.steps, args.symprec, "truth.extxyz"),
                     {(i, 0): s for i, s in truth.items()}))
    print(f"{len(truth)} formulas, load average {os.getloadavg()[0]:.1f}; truth: the split's structure; lower-E: "
          f"lowest-heat_ref perov_5 entry of the formula (all splits); space groups at symprec {args.symprec} Å")
    print(f"{'top candidate':30s} {'truth':>6s} {'lower-E':>8s} {'unscaled':>9s} {'|dV/V| truth med/mean':>22s} "
          f"{'lower-E med/mean':>17s} {'same group':>11s}")
    for name, path, starts in rows:
        top, rank = top_by_arrangement(path[0]) if isinstance(path, tuple) else top_per_id(path)
        r = score(top, truth, best, {i: starts[(i, rank[i])] for i in top}, args.symprec)
        print(f"{name:30s} {r['match_truth']:6.0%} {r['match_scaled']:8.0%} {r['match_unscaled']:9.0%} "
              f"{r['vol_truth_median']:12.1%} / {r['vol_truth_mean']:5.1%} {r['vol_median']:9.1%} / "
              f"{r['vol_mean']:5.1%} {r['same_group']:11.0%}")


if __name__ == "__main__":
    main()
