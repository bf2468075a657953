"""Sampler speed and quality for a trained CDVAE checkpoint: ALD at CDVAE's settings (50 levels x 100
steps, the baseline, measured in the same run) against the faster samplers, at equal sample counts.

Reports crystals/s, decoder calls per crystal (per batch: every call moves the whole batch), structural and
compositional validity and COV-R/COV-P against the first ``--num-ref`` perov_5 test crystals.
Usage: python bench/sampling.py --checkpoint runs/quick/last.pt [--num 200] [--weights raw]
       [--samplers ald,ald_fast,ald_fast:10:1e-4,ald_fast:10:2.5e-5:composition,pc:50]
       (name[:steps[:step_lr[:type_update]]]; step_lr for ALD only, empty fields keep the checkpoint's)
"""
from __future__ import annotations

import argparse
import time

SAMPLERS = "ald,ald_fast,pc:50"


def parse_spec(spec: str) -> tuple[str, int | None, float | None, str | None]:
    """'name[:steps[:step_lr[:type_update]]]' -> (name, steps, step_lr, type_update), None where empty."""
    parts = spec.split(":")
    if len(parts) > 4 or not parts[0]:
        raise SystemExit(f"--samplers: bad entry {spec!r}; expected name[:steps[:step_lr[:type_update]]]")
    parts += [""] * (4 - len(parts))
    steps = int(parts[1]) if parts[1] else None
    step_lr = float(parts[2]) if parts[2] else None
    if step_lr is not None and parts[0] not in ("ald", "ald_fast"):
        raise SystemExit(f"--samplers: {spec!r}: a step_lr applies to ald/ald_fast only")
    return parts[0], steps, step_lr, parts[3] or None


def main() -> None:
    from dataclasses import replace

    import torch

    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.structures.datasets import load_structures
    from genlowdim.crystal.cdvae.sampling import generate
    from genlowdim.metrics.evaluate import evaluate_generation

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--num", type=int, default=200)
    p.add_argument("--num-ref", type=int, default=1000)
    p.add_argument("--weights", choices=["ema", "raw"], default="ema")
    p.add_argument("--samplers", default=SAMPLERS, help="comma-separated name[:steps[:step_lr]]")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = load_model(args.checkpoint, use_ema=args.weights == "ema", task="cdvae")
    ref = load_structures("perov_5", "test")[1][: args.num_ref]
    rows = []
    for spec in args.samplers.split(","):
        name, steps, step_lr, type_update = parse_spec(spec)
        scfg = cfg.sampling
        if step_lr is not None:
            scfg = scfg.with_spec(name, step_lr=step_lr)
        if type_update is not None:
            scfg = replace(scfg, type_update=type_update)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        decoded = generate(model, args.num, scfg, sampler=name, steps=steps, generator=gen)
        seconds = time.perf_counter() - t0
        report = evaluate_generation(decoded.to_structures(), ref, dataset="perov_5", seed=0,
                                     reference_cache_key=f"perov_5:test[:{args.num_ref}]", workers=2,
                                     show_progress=False)
        m = report["metrics"]
        rows.append((spec, decoded.decoder_calls, args.num / seconds, m["struct_valid"], m["comp_valid"],
                     m["cov_recall"], m["cov_precision"]))
        print(rows[-1], flush=True)
    print(f"\n{args.num} crystals per sampler (one batch), {args.threads} thread(s), weights={args.weights}, "
          f"COV against the first {args.num_ref} perov_5 test crystals")
    print(f"{'sampler':<18}{'calls':>7}{'cryst/s':>9}{'struct':>8}{'comp':>7}{'COV-R':>7}{'COV-P':>7}")
    for r in rows:
        print(f"{r[0]:<18}{r[1]:>7}{r[2]:>9.3f}{r[3]:>8.3f}{r[4]:>7.3f}{r[5]:>7.3f}{r[6]:>7.3f}")


if __name__ == "__main__":
    main()
