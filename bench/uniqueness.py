"""Uniqueness: the pairwise path (every ``StructureMatcher.fit`` on raw crystals, one process) against the
reduce-once, screened path on 1 and --workers processes, in the same run.

Sets: the first N carbon_24 val crystals (one formula, many repeated polymorphs) and N perov_5 crystals
resampled from train+val with seeded Gaussian noise on the Cartesian coordinates (as bench/evaluate.py).
The pairwise path is run in full up to --pairwise-max crystals. Above that it would take hours, so its time
is estimated: the number of ``fit`` calls it makes follows exactly from the (identical) duplicate_of
(crystal i of a formula group is fitted against the representatives before it until the first that fits),
and the time per call is measured on the complete calls of randomly drawn crystals (at least --sample
calls). Every row states which.

    python bench/uniqueness.py                                        # a few minutes
    python bench/uniqueness.py --carbon 500 2000 --perov 10000        # the issue's sizes
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def carbon(n: int) -> list:
    from genlowdim.structures.datasets import load_structures

    return load_structures("carbon_24:val")[1][:n]


def perov(n: int, seed: int) -> list:
    from bench.evaluate import load_split, perturbed_resample

    return perturbed_resample(load_split("train") + load_split("val"), n, 0.02, seed)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the pool's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds): on a shared machine the CPU seconds are the steadier figure."""
    start, cpu = time.perf_counter(), cpu_seconds()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start, cpu_seconds() - cpu


def pairwise_calls(structures: list, duplicate_of: np.ndarray) -> list[tuple[int, int]]:
    """The (representative, crystal) pairs the pairwise path fits, in its order, from its result."""
    reps: dict = defaultdict(list)
    calls = []
    for i, s in enumerate(structures):
        group = reps[s.composition.reduced_formula]
        stop = group.index(duplicate_of[i]) + 1 if duplicate_of[i] >= 0 else len(group)
        calls += [(r, i) for r in group[:stop]]
        if duplicate_of[i] < 0:
            group.append(i)
    return calls


def estimate_pairwise(structures: list, duplicate_of: np.ndarray, sample: int, seed: int
                      ) -> tuple[float, float, int]:
    """(estimated wall seconds, estimated CPU seconds, number of fit calls) of the pairwise path: crystals drawn at random have all
    their calls run in the path's order (so its reduction cache behaves as in the full run) until
    ``sample`` calls are timed; mean time per call x number of calls."""
    from genlowdim.metrics.matching import matcher

    calls = pairwise_calls(structures, duplicate_of)
    per_crystal: dict = defaultdict(list)
    for r, i in calls:
        per_crystal[i].append(r)
    m, done, start, cpu = matcher(), 0, time.perf_counter(), cpu_seconds()
    for i in np.random.default_rng(seed).permutation(sorted(per_crystal)):
        for r in per_crystal[i]:
            m.fit(structures[r], structures[i])
        done += len(per_crystal[i])
        if done >= sample:
            break
    scale = len(calls) / max(done, 1)
    return (time.perf_counter() - start) * scale, (cpu_seconds() - cpu) * scale, len(calls)


def row(label: str, structures: list, args) -> dict:
    from genlowdim.metrics.matching import uniqueness

    one, t_one, c_one = timed(uniqueness, structures, workers=1)
    many, t_many, c_many = timed(uniqueness, structures, workers=args.workers)
    dup = one.per_item["duplicate_of"]
    same_workers = bool(np.array_equal(dup, many.per_item["duplicate_of"]))
    if len(structures) <= args.pairwise_max:
        old, t_old, c_old = timed(uniqueness, structures, method="pairwise")
        how, same = "measured", bool(np.array_equal(old.per_item["duplicate_of"], dup))
    else:
        t_old, c_old, n_calls = estimate_pairwise(structures, dup, args.sample, args.seed)
        how, same = f"estimated ({n_calls} fit calls, {args.sample} timed)", None
    return {"set": label, "n": len(structures), "unique": one.value, "pairwise_s": t_old, "pairwise": how,
            "one_s": t_one, "many_s": t_many, "pairwise_cpu": c_old, "one_cpu": c_one, "many_cpu": c_many,
            "same_as_pairwise": same, "same_1_vs_many": same_workers}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--carbon", type=int, nargs="*", default=[300, 2000], help="carbon_24 val sizes")
    p.add_argument("--perov", type=int, nargs="*", default=[2000], help="generated perov_5 sizes")
    p.add_argument("--pairwise-max", type=int, default=500, help="largest set run on the pairwise path")
    p.add_argument("--sample", type=int, default=300, help="fit calls timed for an estimate")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("GENLOWDIM_QUIET", "1")
    rows = [row("carbon_24 val", carbon(n), args) for n in args.carbon]
    rows += [row("perov_5 generated", perov(n, args.seed), args) for n in args.perov]
    print(f"load average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    print(f"| set | N | unique | pairwise path: wall / CPU (s) | new, 1 process: wall / CPU (s) | new, "
          f"{args.workers} processes: wall / CPU (s) | speed-up, wall ({args.workers} proc.) | speed-up, CPU (1 proc.) "
          f"| duplicate_of identical | pairwise time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = {True: "yes", False: "NO", None: "(not run)"}[r["same_as_pairwise"]]
        same += "" if r["same_1_vs_many"] else "; 1 vs many processes DIFFER"
        print(f"| {r['set']} | {r['n']} | {r['unique']:.4f} | {r['pairwise_s']:.1f} / {r['pairwise_cpu']:.1f} | "
              f"{r['one_s']:.1f} / {r['one_cpu']:.1f} | {r['many_s']:.1f} / {r['many_cpu']:.1f} | "
              f"{r['pairwise_s'] / r['many_s']:.0f}x | {r['pairwise_cpu'] / r['one_cpu']:.0f}x | {same} | "
              f"{r['pairwise']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
