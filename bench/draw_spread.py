"""How much one draw of generated crystals moves the distribution figures: for each checkpoint and each sample
seed, ``NUM`` crystals from z ~ N(0, I) with one sampler, and W1 of density and of the number of distinct
elements against the split (all crystals of the draw, valid or not), with the mean atomic mass beside the
split's. Rows of several checkpoints in one run compare models with the draw-to-draw spread in view.

    python bench/draw_spread.py --checkpoints OLD.pt NEW.pt --sampler ald_100 --num 2000 --seeds 1 2 3 4 5
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--sampler", default="ald_100")
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    args = p.parse_args()

    from scipy.stats import wasserstein_distance

    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.cdvae.sampling import generate
    from genlowdim.metrics.structure import densities, num_elements
    from genlowdim.structures.datasets import load_structures

    torch.set_num_threads(1)
    rows = []
    for ckpt in args.checkpoints:
        model, cfg = load_model(ckpt)
        ref = load_structures(cfg.data.dataset, args.split)[1]
        ref_d, ref_n = np.asarray(densities(ref)), np.asarray(num_elements(ref))
        ref_mass = np.mean([s.composition.weight / len(s) for s in ref])
        for seed in args.seeds:
            gen = torch.Generator().manual_seed(seed)
            crystals = []
            with torch.no_grad():
                for start in range(0, args.num, args.batch_size):
                    n = min(args.batch_size, args.num - start)
                    crystals += generate(model, n, cfg.sampling, sampler=args.sampler, generator=gen).to_structures()
            mass = np.mean([s.composition.weight / len(s) for s in crystals])
            rows.append((ckpt, seed, wasserstein_distance(np.asarray(densities(crystals)), ref_d),
                         wasserstein_distance(np.asarray(num_elements(crystals)), ref_n), mass, ref_mass))
            print(f"{ckpt}  seed {seed}: W1 density {rows[-1][2]:.3f}  W1 #elements {rows[-1][3]:.3f}  "
                  f"mean atomic mass {mass:.2f} ({args.split}: {ref_mass:.2f})", flush=True)
    print(f"\n{args.num} crystals per draw, sampler {args.sampler}, against {args.split}")
    print("| checkpoint | W1 density, mean ± std (range) | W1 #elements | mean atomic mass (range) |")
    print("|---|---|---|---|")
    for ckpt in args.checkpoints:
        r = np.array([row[2:5] for row in rows if row[0] == ckpt])
        print(f"| {ckpt} | {r[:, 0].mean():.3f} ± {r[:, 0].std(ddof=1) if len(r) > 1 else 0:.3f} "
              f"({r[:, 0].min():.3f}–{r[:, 0].max():.3f}) | {r[:, 1].mean():.3f} ± "
              f"{r[:, 1].std(ddof=1) if len(r) > 1 else 0:.3f} | {r[:, 2].mean():.2f} "
              f"({r[:, 2].min():.2f}–{r[:, 2].max():.2f}) |")


if __name__ == "__main__":
    main()
