"""Training-step cost of every shipped crystal config: seconds per step (forward + backward + Adam) and peak
resident memory at batch 256 perov_5 crystals (1,280 atoms), each config in its own process.

``--visits``: crystal visits per second of the shipped model's config (``perov_5_pretrained``, batch 128) as
it was trained (e3nn's TensorProduct kernel, encoder edges rebuilt every step, one process, one thread)
against the faster set-ups, all measured in this run, each in its own process(es): the fused message
kernel with precomputed encoder edges, with its interaction blocks compiled (``train.compile_kernels``),
two intra-op threads, and two processes under the training engine's DistributedDataParallel (gloo; each
rank takes half of every global batch); the faster set-ups step the engine's fused Adam. Wall time and CPU
time per step are both printed: on a busy machine the CPU time is the steadier figure.

``--learning STEPS``: val loss along runs of the shipped config as trained, with the fused kernel, and with
compiled blocks on two processes (``torchrun``), from the same seed.

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

    from genlowdim.crystal.cdvae.training import build_model, fit_scalers, load_split
    from genlowdim.crystal.cdvae.config import load_crystal_config

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


VARIANTS = {   # name: (fused kernel + cached encoder edges, compiled blocks, processes, threads per process)
    "shipped (e3nn kernel)": (False, False, 1, 1),
    "fused + cached edges": (True, False, 1, 1),
    "fused, compiled": (True, True, 1, 1),
    "fused, 2 threads": (True, False, 1, 2),
    "fused, compiled, 2 threads": (True, True, 1, 2),
    "fused, 2-process DDP": (True, False, 2, 1),
    "fused, compiled, 2-process DDP": (True, True, 2, 1),
}


def _visit_rank(rank: int, world: int, variant: str, steps: int, batch_size: int, port: int, queue) -> None:
    """One process of a --visits measurement: ``steps`` timed steps after 3 untimed ones."""
    import os

    import torch
    from torch_geometric.data import Batch

    from genlowdim.crystal.geometry import layers
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.crystal.cdvae.training import build_model, fit_scalers, load_split
    from genlowdim.distributed import wrap_ddp

    fused, compiled, _, threads = VARIANTS[variant]
    torch.set_num_threads(threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    layers.use_fused_kernels(fused)
    cfg = load_crystal_config(ROOT / "configs/crystal/perov_5_pretrained.yaml", [])
    items = load_split(cfg, "train", batch_size * 8)
    torch.manual_seed(0)
    model = build_model(cfg, 5)
    fit_scalers(model, items)
    if fused:
        model.encoder.attach_edges(items)
    if compiled:
        layers.compile_blocks(model)
    if variant == "shipped (e3nn kernel)":   # as the shipped model was trained
        net = model if world == 1 else torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
    else:   # as the training engine runs today
        net = wrap_ddp(model, torch.device("cpu"), world)
        opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    gen = torch.Generator().manual_seed(rank)
    batches = [Batch.from_data_list(items[i + rank:i + batch_size:world]) for i in range(0, len(items), batch_size)]
    wall = cpu = 0.0
    for step in range(steps + 3):
        if world > 1:
            torch.distributed.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        loss, _ = net(batches[step % len(batches)], gen, True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= 3:
            wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
    queue.put((rank, wall / steps, cpu / steps))
    if world > 1:
        torch.distributed.destroy_process_group()


def profile_stages(steps: int, batch_size: int) -> None:
    """CPU seconds per training step by stage (graph builds, encoder, decoder, heads + loss, backward, Adam),
    the shipped set-up (e3nn kernel, edges rebuilt) beside the fused one (cached encoder edges), one thread."""
    import torch
    from torch_geometric.data import Batch

    from genlowdim.crystal.cdvae import decoder as dec_mod
    from genlowdim.crystal.geometry import encoder as enc_mod, layers
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.crystal.cdvae.training import build_model, fit_scalers, load_split

    torch.set_num_threads(1)
    clock = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            c0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                clock[name] = clock.get(name, 0.0) + time.process_time() - c0
        return wrapper

    enc_mod.periodic_radius_graph = timed("encoder graph", enc_mod.periodic_radius_graph)
    dec_mod.periodic_radius_graph = timed("decoder graph", dec_mod.periodic_radius_graph)
    cfg = load_crystal_config(ROOT / "configs/crystal/perov_5_pretrained.yaml", [])
    items = load_split(cfg, "train", batch_size * 8)
    table = {}
    for label, fused in (("shipped", False), ("fused", True)):
        layers.use_fused_kernels(fused)
        torch.manual_seed(0)
        model = build_model(cfg, 5)
        fit_scalers(model, items)
        run_items = [d.clone() for d in items]
        if fused:
            model.encoder.attach_edges(run_items)
        model.encoder.forward = timed("encoder (incl. graph)", model.encoder.forward)
        model.decoder.forward = timed("decoder (incl. graph)", model.decoder.forward)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        gen = torch.Generator().manual_seed(0)
        batches = [Batch.from_data_list(run_items[i:i + batch_size]) for i in range(0, len(run_items), batch_size)]
        for step in range(steps + 2):
            if step == 2:
                clock.clear()
            c0 = time.process_time()
            loss, _ = model(batches[step % len(batches)], gen, True)
            c1 = time.process_time()
            opt.zero_grad()
            loss.backward()
            c2 = time.process_time()
            opt.step()
            c3 = time.process_time()
            for name, value in (("forward", c1 - c0), ("backward", c2 - c1), ("Adam", c3 - c2)):
                clock[name] = clock.get(name, 0.0) + value
        row = {k: v / steps for k, v in clock.items()}
        row["heads + loss"] = row["forward"] - row["encoder (incl. graph)"] - row["decoder (incl. graph)"]
        table[label] = row
    order = ["encoder graph", "encoder (incl. graph)", "decoder graph", "decoder (incl. graph)", "heads + loss",
             "forward", "backward", "Adam"]
    print(f"CPU ms per step, perov_5_pretrained, batch {batch_size}, one thread, mean of {steps} steps")
    print(f"{'stage':<24}{'shipped':>10}{'fused':>10}")
    for name in order:
        print(f"{name:<24}{1000 * table['shipped'].get(name, 0):>10.1f}{1000 * table['fused'].get(name, 0):>10.1f}")
    total = {k: v["forward"] + v["backward"] + v["Adam"] for k, v in table.items()}
    print(f"{'step':<24}{1000 * total['shipped']:>10.1f}{1000 * total['fused']:>10.1f}")


def compare_learning(steps: int) -> None:
    """Val loss along three short runs of the shipped config from the same seed: e3nn's kernel (as the
    shipped model was trained), the fused one (which also reads cached encoder edges), and the fused one
    with compiled blocks in two processes (``torchrun``, DDP), so learning per visit can be compared."""
    import csv
    import os
    import tempfile

    import torch

    from genlowdim.crystal.geometry import layers
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.crystal.cdvae.training import train_cdvae

    torch.set_num_threads(1)
    config = ROOT / "configs/crystal/perov_5_pretrained.yaml"
    overrides = [f"train.max_steps={steps}", "train.val_every=1", "data.val_limit=512",
                 "train.checkpoint_every=100000", f"train.log_every={max(1, steps // 10)}"]
    cfg = load_crystal_config(config, overrides)
    curves = {}

    def read(run: Path, label: str, seconds: float) -> None:
        rows = list(csv.DictReader((run / "val.csv").open()))
        curves[label] = ([(int(r["step"]), float(r["val_loss"])) for r in rows], seconds)

    with tempfile.TemporaryDirectory() as tmp:
        for label, fused in (("e3nn kernel", False), ("fused kernel", True)):
            layers.use_fused_kernels(fused)
            t0 = time.perf_counter()
            train_cdvae(cfg, Path(tmp) / label.replace(" ", "_"))
            read(Path(tmp) / label.replace(" ", "_"), label, time.perf_counter() - t0)
        layers.use_fused_kernels(True)
        run = Path(tmp) / "ddp"
        command = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", "-m", "genlowdim",
                   "train", "--config", str(config), "--out", str(run), "--set", "train.compile_kernels=true"]
        for item in overrides:
            command += ["--set", item]
        t0 = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "GENLOWDIM_QUIET": "1"})
        read(run, "compiled, 2-process DDP", time.perf_counter() - t0)
    labels = list(curves)
    print(f"val loss (10·coord + type, 512 val crystals) along {steps} steps of batch 128, same seed")
    print(f"{'step':>6}{'visits':>9}" + "".join(f"{name:>26}" for name in labels))
    for rows in zip(*(curves[name][0] for name in labels)):
        step = rows[0][0]
        print(f"{step:>6}{step * 128:>9}" + "".join(f"{value:>26.4f}" for _, value in rows))
    print("wall time: " + ", ".join(f"{name} {curves[name][1]:.0f} s" for name in labels))


def measure_visits(variant: str, steps: int, batch_size: int) -> dict:
    import random

    import torch.multiprocessing as mp

    world = VARIANTS[variant][2]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = random.randint(20000, 40000)
    procs = [ctx.Process(target=_visit_rank, args=(r, world, variant, steps, batch_size, port, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[1] for r in results)           # the slowest rank sets the pace
    cpu = sum(r[2] for r in results)            # CPU seconds per global step, all processes
    return {"variant": variant, "wall_s": wall, "cpu_s": cpu, "visits_per_s": batch_size / wall,
            "cpu_ms_per_visit": 1000 * cpu / batch_size}


def report_visits(steps: int, batch_size: int, only: list[str] | None) -> None:
    rows = [measure_visits(v, steps, batch_size) for v in VARIANTS if not only or v in only]
    base = rows[0]
    print(f"perov_5_pretrained, batch {batch_size}, mean of {steps} steps after 3 warm-up steps")
    print(f"{'set-up':<34}{'wall s/step':>12}{'visits/s':>10}{'x shipped':>10}{'CPU ms/visit':>14}{'x CPU':>7}")
    for r in rows:
        print(f"{r['variant']:<34}{r['wall_s']:>12.3f}{r['visits_per_s']:>10.0f}"
              f"{r['visits_per_s'] / base['visits_per_s']:>10.2f}{r['cpu_ms_per_visit']:>14.3f}"
              f"{base['cpu_ms_per_visit'] / r['cpu_ms_per_visit']:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--only", default=None, help="measure one config in this process (internal)")
    parser.add_argument("--visits", action="store_true", help="visits per second of the shipped config's set-ups")
    parser.add_argument("--variants", nargs="*", default=None, help=f"with --visits: some of {list(VARIANTS)}")
    parser.add_argument("--profile", action="store_true", help="CPU time per stage of one training step")
    parser.add_argument("--learning", type=int, default=0, metavar="STEPS",
                        help="val loss along two short runs (e3nn kernel, fused kernel) of STEPS steps")
    args = parser.parse_args()
    if args.learning:
        compare_learning(args.learning)
        return
    if args.profile:
        profile_stages(args.steps, 128 if args.batch_size == 256 else args.batch_size)
        return
    if args.visits:
        report_visits(args.steps, 128 if args.batch_size == 256 else args.batch_size, args.variants)
        return
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
