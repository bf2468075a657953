"""Benchmark: periodic radius graph (cutoff 7 Å, 20 nearest neighbours) over all perov_5 test crystals.

* ours     — ``genlowdim.crystal.geometry.graph.periodic_radius_graph``, batched (512 crystals per call, and the
             whole split in one call), float32 and float64;
* pymatgen — ``Structure.get_neighbor_list(7.0)`` per structure, then a sort that keeps each centre's 20
             nearest (what a CDVAE-style data pipeline does per crystal).

Both see the same CDVAE-preprocessed cells (``load_dataset('perov_5:test')``); the run checks that both
keep the same number of edges and the same multiset of distances. The peak extra memory of one
512-crystal call is measured in a fresh process (``ru_maxrss``; on CUDA ``max_memory_allocated``).
Usage::

    python bench/graphs.py [--device cpu|cuda] [--reps 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

CUTOFF, K, BATCH = 7.0, 20, 512


def _tensors(records, dtype, device):
    import numpy as np
    import torch

    lattice = torch.tensor(np.stack([r.lattice for r in records]), dtype=dtype)
    frac = torch.tensor(np.concatenate([r.frac_coords for r in records]), dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(records)), torch.tensor([r.num_atoms for r in records]))
    pos = torch.einsum("ni,nij->nj", frac, lattice[batch])
    return pos.to(device), lattice.to(device), batch.to(device)


def run_ours(records, dtype, device, chunk):
    import torch

    from genlowdim.crystal.geometry.graph import periodic_radius_graph

    parts = [_tensors(records[k:k + chunk], dtype, device) for k in range(0, len(records), chunk)]
    start = time.perf_counter()
    dists = [periodic_radius_graph(*p, CUTOFF, max_neighbors=K).edge_len for p in parts]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, torch.cat(dists).double().cpu()


def run_pymatgen(structures):
    import numpy as np

    start = time.perf_counter()
    kept = []
    for s in structures:
        centre, _, _, dist = s.get_neighbor_list(CUTOFF)
        order = np.lexsort((dist, centre))
        centre, dist = centre[order], dist[order]
        first = np.searchsorted(centre, centre, side="left")
        kept.append(dist[np.arange(len(centre)) - first < K])
    return time.perf_counter() - start, np.concatenate(kept)


def _memory_child(records, dtype_name, device, queue):
    import torch

    from genlowdim.crystal.geometry.graph import periodic_radius_graph

    pos, lattice, batch = _tensors(records[:BATCH], getattr(torch, dtype_name), device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:  # current resident set before the call; the high-water mark after it
        with open("/proc/self/statm") as fh:
            base = int(fh.read().split()[1]) * resource.getpagesize()
    periodic_radius_graph(pos, lattice, batch, CUTOFF, max_neighbors=K)
    if device.startswith("cuda"):
        queue.put(torch.cuda.max_memory_allocated() - base)
    else:
        queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)


def peak_memory(records, dtype_name, device):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(records, dtype_name, device, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from genlowdim.crystal.data import load_dataset
    from genlowdim.runtime import library_versions

    records = load_dataset("perov_5:test").records
    structures = [r.to_structure() for r in records]
    n = len(records)
    rows = []
    runs = [run_pymatgen(structures) for _ in range(args.reps)]
    t_pmg, d_pmg = statistics.median(r[0] for r in runs), runs[0][1]
    rows.append(("pymatgen get_neighbor_list + sort, per structure", "float64", t_pmg, len(d_pmg), None))
    for dtype in (torch.float32, torch.float64):
        for chunk, label in ((BATCH, f"ours, batches of {BATCH}"), (n, f"ours, one batch of {n}")):
            run_ours(records[:BATCH], dtype, args.device, chunk)  # warm-up
            times, dists = [], None
            for _ in range(args.reps):
                t, dists = run_ours(records, dtype, args.device, chunk)
                times.append(t)
            assert len(dists) == len(d_pmg), (len(dists), len(d_pmg))
            gap = float(np.abs(np.sort(dists.numpy()) - np.sort(d_pmg)).max())
            tol = 1e-4 if dtype == torch.float32 else 1e-8
            assert gap < tol, f"distance multisets differ by {gap}"
            mem = peak_memory(records, str(dtype).split(".")[1], args.device) if chunk == BATCH else None
            rows.append((label, str(dtype).split(".")[1], statistics.median(times), len(dists), mem))
    print(f"periodic radius graph, perov_5 test ({n} crystals, {5 * n} atoms), cutoff {CUTOFF} Å, "
          f"{K} nearest; device {args.device}, torch threads {torch.get_num_threads()}, median of "
          f"{args.reps} runs\n")
    print(f"| method | dtype | time (s) | structures/s | vs pymatgen | edges | peak extra memory ({BATCH}) |")
    print("|---|---|---|---|---|---|---|")
    out = []
    for label, dt, t, edges, mem in rows:
        mem_s = "–" if mem is None else f"{mem / 2**20:.0f} MiB"
        print(f"| {label} | {dt} | {t:.3f} | {n / t:,.0f} | {t_pmg / t:.1f}× | {edges:,} | {mem_s} |")
        out.append({"method": label, "dtype": dt, "seconds": t, "structures_per_s": n / t,
                    "speedup_vs_pymatgen": t_pmg / t, "edges": edges, "peak_extra_bytes": mem})
    if args.json:
        from genlowdim.runtime import write_json

        write_json(args.json, {"rows": out, "device": args.device, "versions": library_versions()})


if __name__ == "__main__":
    main()
