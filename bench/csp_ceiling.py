"""The one-sample CSP ceiling a dataset allows: how many distinct structures share each test formula.

CSP predicts a structure from the formula alone. When the dataset holds several structures with the same
reduced formula that StructureMatcher tells apart (DiffCSP's settings: stol 0.5, angle_tol 10, ltol 0.3;
two structures match when ``get_rms_dist`` finds a mapping, as CDVAE's and DiffCSP's scripts decide), a
predictor that sees only the formula gives every test entry of that formula the same distribution of
candidates, so its expected one-sample match rate over those entries is at most 1 / (number of distinct
structures of the formula): the split chose at random which of them is the test entry. The sum over test
entries of that bound, divided by the number of test entries, is the ceiling printed here. (Knowing which
structure sits in the training split and predicting "the other one" would beat it; that uses the split,
not the formula.)

perov_5 holds every ABX3 with A and B swapped as two entries with the same formula: one sample per
composition cannot match much above half of the test entries.

With ``--predictions DIR`` (the output of ``genlowdim csp --split ...``) it also sorts each id's first
candidate into: matches its truth, matches another dataset structure of the same formula (a right answer
to the formula, the wrong entry), or matches none.

    python bench/csp_ceiling.py --dataset perov_5 --split test [--workers 2] [--predictions DIR]
"""
from __future__ import annotations

import argparse
import collections
import time
from concurrent.futures import ProcessPoolExecutor


def _distinct(structures) -> list[int]:
    """Class label per structure: equal labels for structures StructureMatcher matches."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    reps: list = []
    labels = []
    for s in structures:
        for k, r in enumerate(reps):
            if matcher.get_rms_dist(s, r) is not None:
                labels.append(k)
                break
        else:
            reps.append(s)
            labels.append(len(reps) - 1)
    return labels


def _classify(args) -> list[str]:
    """Per prediction: 'truth', 'other' (matches another structure of the formula) or 'none'."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    prediction, truth, others = args
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    if prediction is None:
        return "none"
    try:
        if matcher.get_rms_dist(prediction, truth) is not None:
            return "truth"
        if any(matcher.get_rms_dist(prediction, o) is not None for o in others):
            return "other"
    except Exception:  # noqa: BLE001 - an unreadable prediction matches nothing
        pass
    return "none"


def classify_predictions(directory: str, dataset: str, loaded: dict, workers: int) -> None:
    """``loaded``: split -> (ids, structures) of the whole dataset, as ``main`` read it."""
    from genlowdim.structures.io import read_structures

    by_id, by_formula = {}, collections.defaultdict(list)
    for ids, structures in loaded.values():
        for i, s in zip(ids, structures):
            by_id[i] = s
            by_formula[s.composition.reduced_formula].append(i)
    first = {}
    for i, s in read_structures(f"{directory}/predictions.extxyz"):
        first.setdefault(str(i), s)
    ids = [str(i) for i, _ in read_structures(f"{directory}/truth.extxyz")]
    jobs = []
    for i in ids:
        truth = by_id[i]
        others = [by_id[o] for o in by_formula[truth.composition.reduced_formula] if o != i]
        jobs.append((first.get(i), truth, others))
    with ProcessPoolExecutor(workers) as ex:
        kinds = collections.Counter(ex.map(_classify, jobs, chunksize=32))
    n = len(ids)
    print(f"\nfirst candidate of {n} ids in {directory}:")
    print(f"| matches its truth | matches another {dataset} structure of the formula | matches none |")
    print("|---|---|---|")
    print(f"| {kinds['truth'] / n:.1%} ({kinds['truth']}) | {kinds['other'] / n:.1%} ({kinds['other']}) "
          f"| {kinds['none'] / n:.1%} ({kinds['none']}) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="perov_5")
    p.add_argument("--split", default="test")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--predictions", default=None, help="a `genlowdim csp --split` output directory")
    args = p.parse_args()

    from genlowdim.structures.datasets import load_structures

    t0 = time.perf_counter()
    by_formula: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    loaded = {split: load_structures(args.dataset, split) for split in ("train", "val", "test")}
    structures = {split: pair[1] for split, pair in loaded.items()}
    for split, items in structures.items():
        for i, s in enumerate(items):
            by_formula[s.composition.reduced_formula].append((split, i))

    formulas = [f for f, entries in by_formula.items() if any(s == args.split for s, _ in entries)]
    groups = [[structures[s][i] for s, i in by_formula[f]] for f in formulas]
    with ProcessPoolExecutor(args.workers) as ex:
        labels = list(ex.map(_distinct, groups, chunksize=64))

    bound = 0.0
    n_test = 0
    table = collections.Counter()
    for f, lab in zip(formulas, labels):
        entries = by_formula[f]
        distinct = len(set(lab))
        where = tuple(sorted(s for s, _ in entries))
        for s, _ in entries:
            if s == args.split:
                n_test += 1
                bound += 1.0 / distinct
                table[(len(entries), distinct, where)] += 1

    print(f"{args.dataset} {args.split}: {n_test} entries, {len(formulas)} formulas "
          f"({time.perf_counter() - t0:.0f} s, {args.workers} workers)")
    print("| entries with this formula (splits) | distinct structures | test entries | bound per entry |")
    print("|---|---|---|---|")
    for (n, d, where), c in sorted(table.items(), key=lambda kv: -kv[1]):
        print(f"| {n} ({', '.join(where)}) | {d} | {c} | {1 / d:.2f} |")
    print(f"one-sample ceiling for a formula-only predictor: {bound / n_test:.1%}")
    if args.predictions:
        classify_predictions(args.predictions, args.dataset, loaded, args.workers)


if __name__ == "__main__":
    main()
