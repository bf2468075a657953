"""Sampler speed and quality for a trained CDVAE checkpoint: ALD at CDVAE's settings (50 levels x 100
steps, the baseline, measured in the same run) against the faster samplers, at equal sample counts.

Reports crystals/s, decoder calls per crystal (per batch: every call moves the whole batch), structural and
compositional validity and COV-R/COV-P against the first ``--num-ref`` perov_5 test crystals.
Usage: python bench/sampling.py --checkpoint runs/quick/last.pt [--num 200] [--weights raw]
"""
from __future__ import annotations

import argparse
import time

SAMPLERS = [("ald", None), ("ald_fast", None), ("pc", 50)]


def main() -> None:
    import torch

    from genlowdim.crystal.api import load_model
    from genlowdim.crystal.data import load_dataset
    from genlowdim.crystal.sampling import generate
    from genlowdim.metrics.evaluate import evaluate_generation

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--num", type=int, default=200)
    p.add_argument("--num-ref", type=int, default=1000)
    p.add_argument("--weights", choices=["ema", "raw"], default="ema")
    p.add_argument("--samplers", default=",".join(n for n, _ in SAMPLERS))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = load_model(args.checkpoint, use_ema=args.weights == "ema", task="cdvae")
    ref = [r.to_structure() for r in load_dataset("perov_5", "test").records[: args.num_ref]]
    rows = []
    for name, steps in SAMPLERS:
        if name not in args.samplers.split(","):
            continue
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        decoded = generate(model, args.num, cfg.sampling, sampler=name, steps=steps, generator=gen)
        seconds = time.perf_counter() - t0
        report = evaluate_generation(decoded.to_structures(), ref, dataset="perov_5", seed=0,
                                     reference_cache_key=f"perov_5:test[:{args.num_ref}]", workers=2,
                                     show_progress=False)
        m = report["metrics"]
        rows.append((name, decoded.decoder_calls, args.num / seconds, m["struct_valid"], m["comp_valid"],
                     m["cov_recall"], m["cov_precision"]))
        print(rows[-1], flush=True)
    print(f"\n{args.num} crystals per sampler (one batch), {args.threads} thread(s), weights={args.weights}, "
          f"COV against the first {args.num_ref} perov_5 test crystals")
    print(f"{'sampler':<10}{'calls':>7}{'cryst/s':>9}{'struct':>8}{'comp':>7}{'COV-R':>7}{'COV-P':>7}")
    for r in rows:
        print(f"{r[0]:<10}{r[1]:>7}{r[2]:>9.3f}{r[3]:>8.3f}{r[4]:>7.3f}{r[5]:>7.3f}{r[6]:>7.3f}")


if __name__ == "__main__":
    main()
