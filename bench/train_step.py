"""Training-step cost of every shipped crystal config: seconds per step (forward + backward + Adam) and peak
resident memory at batch 256 perov_5 crystals (1,280 atoms), each config in its own process.

Baseline in the same run: a 3-layer channel-wise ('uvu', NequIP/MACE style) e3nn network, 64x0e+32x1o,
12 neighbours / 6 Å, used
as both encoder and decoder ("reference-3L"). Usage: python bench/train_step.py [--steps 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["reference-3L", "tiny", "demo", "perov_5_quick", "property_perov_5", "perov_5"]


def measure(name: str, steps: int, threads: int, batch_size: int) -> dict:
    import resource

    import torch
    from torch_geometric.data import Batch

    from genlowdim.crystal.training import build_model, fit_scalers, load_split
    from genlowdim.crystal.config import load_crystal_config

    torch.set_num_threads(threads)
    overrides = []
    if name == "reference-3L":
        path = ROOT / "configs/crystal/perov_5_quick.yaml"
        net = "{num_layers: 3, num_scalars: 64, num_vectors: 32, cutoff: 6.0, max_neighbors: 12}"
        overrides = [f"model.encoder={net}", f"model.decoder={net}"]
    else:
        path = ROOT / f"configs/crystal/{name}.yaml"
    cfg = load_crystal_config(path, overrides + ["data.train_limit=null"])
    items = load_split(cfg, "train", batch_size)
    torch.manual_seed(0)
    model = build_model(cfg, 5)
    fit_scalers(model, items)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    batch = Batch.from_data_list(items)
    times = []
    for _ in range(steps + 1):   # the first step (e3nn code generation, allocator warm-up) is not counted
        t0 = time.perf_counter()
        loss, _ = model(batch, gen, True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"config": name, "params": sum(p.numel() for p in model.parameters()),
            "step_s": sorted(times[1:])[len(times[1:]) // 2],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--only", default=None, help="measure one config in this process (internal)")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args.steps, args.threads, args.batch_size)))
        return
    rows = []
    for name in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--only", name, "--steps", str(args.steps),
                              "--threads", str(args.threads), "--batch-size", str(args.batch_size)],
                             capture_output=True, text=True, cwd=ROOT, env={"GENLOWDIM_QUIET": "1", **_env()})
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = next((r["step_s"] for r in rows if r["config"] == "reference-3L"), None)
    print(f"batch {args.batch_size} perov_5 crystals, {args.threads} thread(s), median of {args.steps} steps")
    print(f"{'config':<18}{'params':>10}{'step (s)':>10}{'vs ref':>8}{'peak RSS (MB)':>15}")
    for r in rows:
        rel = f"{r['step_s'] / base:.2f}x" if base else "-"
        print(f"{r['config']:<18}{r['params']:>10}{r['step_s']:>10.2f}{rel:>8}{r['peak_rss_mb']:>15.0f}")


def _env() -> dict:
    import os

    return dict(os.environ)


if __name__ == "__main__":
    main()
