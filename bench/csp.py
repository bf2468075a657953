"""Crystal structure prediction: the latent sources of ``genlowdim.crystal.cdvae.csp`` compared on a split.

For the first ``--num`` compositions of the split, each method proposes candidates, which are decoded with
the formula's types (``type_update: composition``) and matched against the true structure with
StructureMatcher(stol 0.5, angle_tol 10, ltol 0.3) (DiffCSP's protocol). One sample: the top-ranked
candidate of each composition (match rate over all compositions, RMSE over matched). Best of k: a
composition counts when any of its k candidates matches (RMSE: the smallest among its matches). The
``random`` method (one z ~ N(0, I) per candidate, no search) is the baseline measured in the same run.

    python bench/csp.py --checkpoint ~/.cache/genlowdim/snapshots/perov_5_mid.pt --split val --num 100 \
        --k 5 --num-k 40 --methods random prior prior_opt posterior posterior_opt
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def score_candidates(decoded, truths, samples: int) -> dict:
    """Match statistics of formula-major candidates (``samples`` per truth)."""
    from genlowdim.metrics.composition import compositional_validity
    from genlowdim.metrics.matching import reconstruction
    from genlowdim.metrics.structure import structural_validity

    preds = decoded.to_structures()
    valid = structural_validity(preds).per_item["valid"] & compositional_validity(preds).per_item["valid"]
    repeated = [t for t in truths for _ in range(samples)]
    rms = reconstruction(preds, repeated, valid).get("match_rate").per_item["rms"].reshape(len(truths), samples)
    matched = ~np.isnan(rms)
    top = matched[:, 0]
    best = matched.any(1)
    best_rms = np.array([np.min(r[m]) if m.any() else np.nan for r, m in zip(rms, matched)])
    return {"compositions": len(truths), "samples": samples, "valid": float(valid.mean()),
            "top1_match": float(top.mean()), "top1_rmse": float(np.nanmean(rms[:, 0])) if top.any() else None,
            f"best_of_{samples}_match": float(best.mean()),
            f"best_of_{samples}_rmse": float(np.nanmean(best_rms)) if best.any() else None,
            "decoder_calls_per_batch": decoded.decoder_calls}


def run_method(model, cfg, items, method: str, samples: int, args, pool) -> dict:
    from genlowdim.crystal.cdvae.csp import CSPSettings, predict_structures
    from genlowdim.crystal.decoded import batch_to_decoded
    from torch_geometric.data import Batch

    settings = CSPSettings(method=method, draws=args.draws, opt_steps=args.opt_steps, opt_lr=args.opt_lr)
    truths = batch_to_decoded(Batch.from_data_list(items)).to_structures()
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    decoded, _ = predict_structures(model, cfg.sampling, [d.atom_types for d in items], samples, settings,
                                    pool=pool, sampler=args.sampler, generator=gen)
    seconds = time.perf_counter() - t0
    return {"method": method, **score_candidates(decoded, truths, samples), "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--num", type=int, default=100, help="compositions for the one-sample table")
    p.add_argument("--k", type=int, default=5, help="candidates per composition for the best-of-k table")
    p.add_argument("--num-k", type=int, default=40, help="compositions for the best-of-k table (0: skip)")
    p.add_argument("--methods", nargs="+", default=["random", "prior", "prior_opt", "posterior", "posterior_opt"])
    p.add_argument("--k-methods", nargs="+", default=None, help="methods of the best-of-k table (default: all)")
    p.add_argument("--draws", type=int, default=2048)
    p.add_argument("--opt-steps", type=int, default=100)
    p.add_argument("--opt-lr", type=float, default=0.05)
    p.add_argument("--pool-size", type=int, default=2000)
    p.add_argument("--sampler", default="ald_fast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.latents import encode_pool
    from genlowdim.crystal.cdvae.training import load_split

    model, cfg = load_model(args.checkpoint)
    pool = encode_pool(model, load_split(cfg, "train", args.pool_size))
    rows = []
    for samples, num, methods in ((1, args.num, args.methods), (args.k, args.num_k, args.k_methods or args.methods)):
        if num <= 0:
            continue
        items = load_split(cfg, args.split, num)
        for method in methods:
            row = run_method(model, cfg, items, method, samples, args, pool)
            rows.append(row)
            rmse = row["top1_rmse"] if samples == 1 else row[f"best_of_{samples}_rmse"]
            rate = row["top1_match"] if samples == 1 else row[f"best_of_{samples}_match"]
            extra = "" if samples == 1 else f" (top-ranked {row['top1_match']:.1%})"
            print(f"{args.split} {method:<14} n={num:<4} k={samples:<3} match {rate:6.1%}{extra} "
                  f"RMSE {rmse if rmse is None else round(rmse, 4)} valid {row['valid']:.1%} "
                  f"decoder calls/batch {row['decoder_calls_per_batch']} {row['seconds']:.0f} s", flush=True)
            if args.json:
                with open(args.json, "w") as fh:
                    json.dump({"args": vars(args), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
