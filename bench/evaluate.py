"""Benchmark of ``genlowdim.metrics`` against CDVAE's per-structure, single-process evaluation path.

Generated set: perov_5 train+val crystals resampled (seeded) to --num structures, Cartesian coordinates
perturbed by seeded Gaussian noise (--noise Å); reference: perov_5 test (first --num-reference rows, all
by default). Stages timed: structural + compositional validity, generated fingerprints, reference
fingerprints (cold: computed and cached; cached: loaded), coverage, property EMDs.

Baseline, measured in the same run on --baseline-num generated crystals: CDVAE's path, i.e. per crystal in
one process ``structure.distance_matrix`` validity, ``smact`` validity (installed SMACT, its 2014 table),
``CrystalNNFingerprint.featurize`` on every site and Magpie ``featurize``, with no cache and no
de-duplication; its per-crystal time is scaled to (num + num_reference) crystals and divided by --workers
(CDVAE's process pool, counted as perfectly parallel, which favours the baseline).
Ours: ``--fingerprints fast`` (default) or ``reference``. Then the same comparison on --num-20 random
skewed 20-atom cells (mp_20-like sizes), once from the sparse generator and once at mp_20-like densities
(10–25 Å³ per atom): our fingerprints (one process) vs matminer on --baseline-20 of them, per structure,
with the max |difference| on the common structures.

With ``--command N [N ...]`` it instead times what a user waits for: ``genlowdim evaluate`` as a
subprocess (start-up and reading the files included) on N generated crystals (noise --noise Å) against
perov_5:test with the reference fingerprints already cached, beside CDVAE's path measured in the same run,
and prints each stage's share (from the ``timings.json`` the command writes).

    .venv/bin/python bench/evaluate.py --num 200 --num-reference 200      # minutes
    .venv/bin/python bench/evaluate.py                                     # 10,000 vs 3,785 (long)
    .venv/bin/python bench/evaluate.py --command 3787 10000 --noise 0.2    # the command, end to end
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_split(split: str, limit: int | None = None) -> list:
    from genlowdim.structures.io import read_structures

    path = ROOT / "datasets" / "perov_5" / f"{split}.csv.gz"
    structures = [s for _, s in read_structures(path)]
    return structures[:limit] if limit else structures


def perturbed_resample(pool: list, num: int, noise: float, seed: int) -> list:
    """num crystals drawn with replacement from pool, Cartesian coordinates + N(0, noise²) Å."""
    from pymatgen.core import Structure

    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(pool), (num,), generator=gen).tolist()
    out = []
    for k in picks:
        s = pool[k]
        shift = torch.randn(len(s), 3, generator=gen, dtype=torch.float64).numpy() * noise
        out.append(Structure(s.lattice, s.species, s.cart_coords + shift, coords_are_cartesian=True))
    return out


def cdvae_path(structures: list) -> tuple[float, np.ndarray]:
    """Seconds per crystal of CDVAE's per-structure path, and its structure fingerprints (N, 61)."""
    from matminer.featurizers.composition.composite import ElementProperty
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
    from smact.screening import smact_validity

    crystal_nn, magpie = CrystalNNFingerprint.from_preset("ops"), ElementProperty.from_preset("magpie")
    fps = []
    start = time.perf_counter()
    for s in structures:
        dist = s.distance_matrix + np.eye(len(s)) * 10.5
        _ = bool(dist.min() >= 0.5 and s.volume >= 0.1)
        _ = smact_validity(s.composition, oxidation_states_set="smact14")
        _ = magpie.featurize(s.composition)
        fps.append(np.mean([crystal_nn.featurize(s, i) for i in range(len(s))], axis=0))
    return (time.perf_counter() - start) / len(structures), np.array(fps)


def pipeline(gen: list, ref: list, cache: Path, workers: int, seed: int, partial: Path | None = None,
             method: str = "fast") -> dict[str, float]:
    """Wall time (s) of each stage of the genlowdim generation metrics (no uniqueness/novelty);
    stage times are written to ``partial`` as they complete."""
    from genlowdim.runtime import write_json
    from genlowdim.metrics.composition import compositional_validity
    from genlowdim.metrics.coverage import coverage
    from genlowdim.metrics.fingerprints import cached_fingerprints, compute_fingerprints
    from genlowdim.metrics.properties import property_statistics
    from genlowdim.metrics.structure import structural_validity

    t, times = time.perf_counter(), {}
    sv, cv = structural_validity(gen), compositional_validity(gen)
    times["validity"], t = time.perf_counter() - t, time.perf_counter()
    if partial:
        write_json(partial, times)
    fps = compute_fingerprints(gen, workers=workers, desc="generated", method=method)
    times["generated fingerprints"], t = time.perf_counter() - t, time.perf_counter()
    if partial:
        write_json(partial, times)
    ref_fps, info = cached_fingerprints(ref, "bench:perov_5:test", cache, workers=workers, desc="reference",
                                        method=method)
    times["reference fingerprints" + (" (cache hit)" if info["cache_hit"] else " (computed)")] = \
        time.perf_counter() - t
    t = time.perf_counter()
    ok, rok = fps.ok, ref_fps.ok
    cov = coverage(fps.struct[ok], fps.comp[ok], ref_fps.struct[rok], ref_fps.comp[rok], 0.2, 4.0, len(gen))
    times["coverage"], t = time.perf_counter() - t, time.perf_counter()
    valid = sv.per_item["valid"] & cv.per_item["valid"] & ok
    props = property_statistics(gen, valid, ref, num_samples=1000, seed=seed)
    times["property EMDs"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    times["_values"] = {"struct_valid": sv.value, "comp_valid": cv.value, "cov_recall": cov["cov_recall"].value,
                        "cov_precision": cov["cov_precision"].value,
                        "wdist_density": props["wdist_density"].value, "_struct_fp": fps.struct,
                        "fallback_sites": fps.info.get("fallback_sites"), "sites": fps.info.get("sites"),
                        "replayed_voronoi_sites": fps.info.get("replayed_voronoi_sites")}
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=10_000, help="generated crystals (default 10000)")
    p.add_argument("--num-reference", type=int, default=None, help="reference rows (default: all 3785)")
    p.add_argument("--baseline-num", type=int, default=100, help="crystals timed on CDVAE's path")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--noise", type=float, default=0.02, help="coordinate noise in Å (default 0.02)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-cached-rerun", action="store_true",
                   help="time the cached pipeline as: cold stages with the reference step replaced by "
                   "a measured cache load (saves re-fingerprinting the generated set)")
    p.add_argument("--fingerprints", choices=("fast", "reference"), default="fast")
    p.add_argument("--num-20", type=int, default=1000, help="random 20-atom cells (0 = skip)")
    p.add_argument("--baseline-20", type=int, default=20, help="20-atom cells timed with matminer")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_evaluate.json"))
    p.add_argument("--command", type=int, nargs="*", default=None, metavar="N",
                   help="time `genlowdim evaluate` end to end on these numbers of crystals instead")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.command:
        return command_bench(args)
    ref = load_split("test", args.num_reference)
    gen = perturbed_resample(load_split("train") + load_split("val"), args.num, args.noise, args.seed)
    base_per, base_fp = cdvae_path(gen[:args.baseline_num])
    print(f"CDVAE path measured: {base_per:.3f} s per crystal", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cold = pipeline(gen, ref, Path(tmp), args.workers, args.seed, Path(args.out + ".partial.json"),
                        args.fingerprints)
        if args.skip_cached_rerun:
            from genlowdim.metrics.fingerprints import cached_fingerprints

            t = time.perf_counter()
            cached_fingerprints(ref, "bench:perov_5:test", Path(tmp), workers=args.workers,
                                method=args.fingerprints)
            load = time.perf_counter() - t
            cached = {k: v for k, v in cold.items() if not k.startswith("reference") and k != "total"}
            cached["reference fingerprints (cache hit)"] = load
            cached["total"] = sum(v for k, v in cached.items() if k != "_values")
            cached_note = "composed: cold stages + measured cache load"
        else:
            cached = pipeline(gen, ref, Path(tmp), args.workers, args.seed, method=args.fingerprints)
            cached_note = "measured"
    diff = float(np.abs(cold["_values"]["_struct_fp"][:args.baseline_num] - base_fp).max())
    report(args, cold, cached, cached_note, base_per, diff, len(ref))
    if args.num_20:
        twenty(args)
    return 0


def run_command(samples: Path, out: Path, cache: Path, workers: int) -> tuple[float, dict]:
    """Wall seconds of ``genlowdim evaluate`` as a subprocess, and its stage seconds."""
    import os
    import subprocess

    env = dict(os.environ, GENLOWDIM_CACHE_DIR=str(cache), GENLOWDIM_QUIET="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "genlowdim", "evaluate", str(samples), "--reference", "perov_5:test",
           "--out", str(out), "--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return wall, json.loads((out / "timings.json").read_text())["stage_seconds"]


def command_bench(args) -> int:
    """``genlowdim evaluate`` end to end (reference cached) against CDVAE's path, same run."""
    import os

    from genlowdim.structures.io import write_extxyz

    pool, n_ref = load_split("train") + load_split("val"), len(load_split("test"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = perturbed_resample(pool, 50, args.noise, args.seed + 1)
        write_extxyz(warm, tmp / "warm.extxyz")
        run_command(tmp / "warm.extxyz", tmp / "warm", tmp / "cache", args.workers)   # caches the reference
        for n in args.command:
            gen = perturbed_resample(pool, n, args.noise, args.seed)
            write_extxyz(gen, tmp / f"gen{n}.extxyz")
            wall, stages = run_command(tmp / f"gen{n}.extxyz", tmp / f"out{n}", tmp / "cache", args.workers)
            base_per, _ = cdvae_path(gen[:args.baseline_num])
            baseline = base_per * (n + n_ref) / args.workers
            print(f"\n`genlowdim evaluate` on {n} perov_5 crystals (noise {args.noise} Å) vs perov_5:test "
                  f"({n_ref}), reference cached, --workers {args.workers}; load average now "
                  f"{os.getloadavg()[0]:.2f}")
            print(f"| stage | seconds | share |\n|---|---|---|")
            stages = dict({"start-up and reading inputs": wall - sum(stages.values())}, **stages)
            for name, sec in stages.items():
                print(f"| {name} | {sec:.1f} | {sec / wall:.0%} |")
            print(f"| **command, end to end** | **{wall:.1f}** | 100% |")
            print(f"CDVAE path: {base_per:.3f} s/crystal on {args.baseline_num} (one process) -> {baseline:.0f} s "
                  f"for {n + n_ref} crystals on {args.workers} processes; speed-up {baseline / wall:.1f}x",
                  flush=True)
    return 0


def twenty(args) -> None:
    """Fast vs matminer on random skewed 20-atom cells, sparse and at mp_20-like densities, one process
    each, same run."""
    from bench.fingerprint_agreement import fast_fingerprints, reference_fingerprints, random_cells

    for label, dense in (("sparse", False), ("10-25 Å³/atom", True)):
        cells = random_cells(args.num_20, args.seed, num_atoms=20, dense=dense)
        fast, t_fast, stats = fast_fingerprints(cells)
        ref, t_ref = reference_fingerprints(cells[:args.baseline_20])
        diffs = [float(np.abs(a - b).max()) for a, b in zip(fast, ref)
                 if not isinstance(a, Exception) and not isinstance(b, Exception)]
        same_fail = [isinstance(a, Exception) for a in fast[:len(ref)]] == [isinstance(b, Exception) for b in ref]
        print(f"\n20-atom random skewed cells, {label} (one process): ours {1e3 * t_fast:.1f} ms/structure on "
              f"{len(cells)} (total {t_fast * len(cells):.1f} s; fallback {stats.fallback_sites}/{stats.sites} "
              f"sites, exact Voronoi {stats.replayed_sites}); matminer {1e3 * t_ref:.1f} ms/structure on "
              f"{len(ref)} -> {t_ref / t_fast:.1f}x; max |difference| "
              f"{max(diffs) if diffs else float('nan'):.1e}, same failures: {same_fail}", flush=True)


def report(args, cold, cached, cached_note, base_per, diff, n_ref) -> None:
    from genlowdim.runtime import write_json

    baseline_total = base_per * (args.num + n_ref) / args.workers
    print(f"\nperov_5: {args.num} generated (train+val, noise {args.noise} Å, seed {args.seed}) vs "
          f"{n_ref} reference, {args.workers} workers")
    print(f"{'stage':<40} {'cold (s)':>10} {'cached (s)':>11}")
    keys = [k for k in cold if not k.startswith("_")] + [k for k in cached if k.startswith("reference")
                                                         and k not in cold]
    for k in keys:
        c, w = cold.get(k), cached.get(k)
        print(f"{k:<40} {'' if c is None else f'{c:10.1f}':>10} {'' if w is None else f'{w:11.1f}':>11}")
    print(f"CDVAE path: {base_per:.3f} s/crystal on {args.baseline_num} crystals (one process) -> "
          f"{baseline_total:.0f} s for {args.num + n_ref} crystals on {args.workers} processes")
    print(f"speed-up vs CDVAE path: cold {baseline_total / cold['total']:.2f}x, "
          f"cached {baseline_total / cached['total']:.2f}x ({cached_note})")
    print(f"max |fingerprint difference| vs matminer on the baseline crystals: {diff:.2e}")
    v = cold["_values"]
    if v.get("sites"):
        print(f"fingerprints: {args.fingerprints}; sites computed by matminer on the fast path: "
              f"{v['fallback_sites']}/{v['sites']} ({v['fallback_sites'] / v['sites']:.2%}); faces from "
              f"pymatgen's Voronoi step: {v['replayed_voronoi_sites']}")
    values = {k: v for k, v in cold["_values"].items() if not k.startswith("_")}
    print("metrics:", json.dumps(values))
    write_json(args.out, {"args": vars(args), "cold_s": {k: v for k, v in cold.items() if k[0] != "_"},
                          "cached_s": {k: v for k, v in cached.items() if k[0] != "_"},
                          "cached_note": cached_note, "cdvae_s_per_crystal": base_per,
                          "cdvae_total_s": baseline_total, "max_fp_diff": diff, "metrics": values})


if __name__ == "__main__":
    sys.exit(main())
