"""Generation aimed at a property against unconditional generation with the same decoder calls.

The target is the training split's ``--percentile`` (default 10th) of the dataset's property: ``prop <
p10``. Unconditional: z ~ N(0, I), decoded. Targeted: rejection on the CDVAE property head
(``genlowdim.crystal.tasks.targeted``), decoded with the same sampler and the same number of crystals, hence the
same decoder calls. Each decoded crystal is judged by the *separate* property predictor; the table gives
validity (structural and compositional), the fraction of all / of valid crystals meeting the target,
uniqueness of the valid ones (StructureMatcher, CDVAE tolerances) and the head's acceptance rate.

    python bench/targeted.py --checkpoint ~/.cache/genlowdim/snapshots/perov_5_mid.pt \
        --property-model ~/.cache/genlowdim/snapshots/property_mid.pt --num 200
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def train_percentile(cfg, percentile: float) -> float:
    from genlowdim.crystal.cdvae.training import load_split

    values = torch.cat([d.y.view(-1) for d in load_split(cfg, "train")]).double()
    return float(torch.quantile(values, percentile / 100))


def judge(decoded, property_fn, target, train=None) -> dict:
    from genlowdim.metrics.composition import compositional_validity
    from genlowdim.metrics.matching import uniqueness
    from genlowdim.metrics.structure import structural_validity

    structures = decoded.to_structures()
    valid = structural_validity(structures).per_item["valid"] & compositional_validity(structures).per_item["valid"]
    values = np.full(len(structures), np.nan)
    idx = np.flatnonzero(valid)
    if len(idx):
        values[idx] = property_fn([structures[i] for i in idx])
    hit = valid & (values > target.low) & (values < target.high)
    unique = uniqueness(structures, valid)
    novel = None
    if train is not None:
        from genlowdim.metrics.matching import novelty

        novel = novelty(structures, train, valid).value
    return {"crystals": len(structures), "valid": float(valid.mean()), "hit_of_all": float(hit.mean()),
            "hit_of_valid": float(hit.sum() / max(valid.sum(), 1)), "unique_of_valid": unique.value,
            "distinct_valid": unique.params["num_distinct"], "novel_of_valid": novel,
            "median_property_valid": float(np.nanmedian(values)) if len(idx) else None,
            "decoder_calls_per_batch": decoded.decoder_calls}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--property-model", required=True)
    p.add_argument("--num", type=int, default=200)
    p.add_argument("--percentile", type=float, default=10.0)
    p.add_argument("--sampler", default="ald_fast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=["unconditional", "prior", "posterior"],
                   choices=["unconditional", "prior", "posterior"], help="rows; the first is the baseline")
    p.add_argument("--pool-size", type=int, default=2000, help="training crystals encoded for 'posterior'")
    p.add_argument("--margin", type=float, default=0.0,
                   help="head screen this far inside the target (property units); the crystals are judged "
                   "against the target itself")
    p.add_argument("--novelty", action="store_true", help="also the novelty of valid crystals against train")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from genlowdim.crystal.cdvae.checkpoints import load_model, property_fn_from_checkpoint
    from genlowdim.crystal.cdvae.protocols import resolve
    from genlowdim.crystal.cdvae.sampling import decode_latents
    from genlowdim.crystal.tasks.targeted import PropertyTarget, targeted_latents
    from genlowdim.crystal.cdvae.training import load_split
    from genlowdim.structures.registry import get_spec

    model, cfg = load_model(args.checkpoint)
    cfg, record = resolve("genlowdim", "sample", cfg, sampler=args.sampler)
    property_fn = property_fn_from_checkpoint(args.property_model)
    name = get_spec(cfg.data.dataset).property
    threshold = train_percentile(cfg, args.percentile)
    from genlowdim.crystal.tasks.targeted import head_error

    err = head_error(model, load_split(cfg, "val"))
    print(f"property head on the {err['num']} val crystals' μ: error std {err['std']:.3f}, MAE {err['mae']:.3f} "
          f"(the --target-margin rule: one std)", flush=True)
    target = PropertyTarget(name, high=threshold)
    print(f"target {target} (train p{args.percentile:g}; head screen {target.shrunk(args.margin)}); sampler {record.sampler}, types "
          f"{record.type_update}", flush=True)
    rows = []
    from genlowdim.crystal.latents import draw_latents, encode_pool

    pool = encode_pool(model, load_split(cfg, "train", args.pool_size)) if "posterior" in args.methods else None
    train = None
    if args.novelty:
        from genlowdim.metrics.cli import load_input

        train = load_input(f"{cfg.data.dataset}:train")[1]
    labels = {"unconditional": "unconditional", "prior": "targeted: rejection over z ~ N(0, I)",
              "posterior": "targeted: rejection over the training posterior"}
    for method in args.methods:
        label = labels[method]
        gen = torch.Generator().manual_seed(args.seed)
        t0 = time.perf_counter()
        extra = {}
        if method == "unconditional":
            z = torch.randn((args.num, model.cfg.latent_dim), generator=gen)
        else:
            source = pool if method == "posterior" else None
            screen = target.shrunk(args.margin)
            z, met, draws = targeted_latents(model, args.num, screen, generator=gen, pool=source)
            probe = draw_latents(20000, model.cfg.latent_dim, source, torch.Generator().manual_seed(99), z)
            rate = float(screen.met(model.predict_property(probe)).double().mean())
            extra = {"head_accepted": met, "head_draws": draws, "head_acceptance_rate": rate}
        decoded = decode_latents(model, z, cfg.sampling, generator=gen)
        row = {"method": label, **judge(decoded, property_fn, target, train), **extra,
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]
    ratios = {r["method"]: r["hit_of_all"] / base["hit_of_all"] if base["hit_of_all"] else float("inf")
              for r in rows[1:]}
    print(f"\n| method | valid | meets {target} (of all) | (of valid) | unique (of valid) | novel (of valid) "
          f"| decoder calls |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        novel = "–" if r["novel_of_valid"] is None else f"{r['novel_of_valid']:.1%}"
        print(f"| {r['method']} | {r['valid']:.1%} | {r['hit_of_all']:.1%} | {r['hit_of_valid']:.1%} | "
              f"{r['unique_of_valid']:.1%} | {novel} | {r['decoder_calls_per_batch']} x 1 batch of {r['crystals']} |")
    print("ratio to the first row (of all):", {k: round(v, 2) for k, v in ratios.items()})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "target": str(target), "threshold": threshold, "rows": rows,
                       "ratios": ratios}, fh, indent=1)


if __name__ == "__main__":
    main()
