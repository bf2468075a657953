"""How fast the latent learns a crystal's composition, by encoder readout width (the baseline is the narrow
readout, measured in the same run).

Trains only the CDVAE encoder and composition head of ``configs/crystal/perov_5_quick.yaml`` (loss: the
composition cross-entropy + 0.01·KL, z sampled as in training) for ``--steps`` Adam steps at batch 128 on
perov_5 train, and prints the validation composition CE (first 512 val crystals, one fixed noise draw) per
readout width. The floor is the entropy of the validation formulas.
Usage: python bench/readout.py [--steps 300] [--widths 0,256] [--lr 1e-3] [--threads 1]
(width 0 = the narrow readout, ``num_scalars`` wide).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_width(cfg, width: int, train, val_batch, steps: int, lr: float, seed: int = 0):
    """-> (validation composition CE, seconds) after ``steps`` steps with ``readout_dim = width or None``."""
    from dataclasses import replace

    import torch
    from torch_geometric.data import Batch

    from genlowdim.crystal.cdvae.training import build_model
    from genlowdim.crystal.cdvae.model import composition_loss, kl_to_prior

    enc_cfg = replace(cfg.model.encoder, readout_dim=width or None)
    cfg = replace(cfg, model=replace(cfg.model, encoder=enc_cfg))
    torch.manual_seed(seed)
    model = build_model(cfg, 5)
    params = list(model.encoder.parameters()) + list(model.fc_composition.parameters())
    opt = torch.optim.Adam(params, lr)
    gen = torch.Generator().manual_seed(seed)

    def losses(batch, generator):
        mu, log_var, z = model.encode(batch, generator)
        return composition_loss(model.fc_composition(z), batch), kl_to_prior(mu, log_var)

    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(train), (128,), generator=gen).tolist()
        ce, kld = losses(Batch.from_data_list([train[i] for i in idx]), gen)
        opt.zero_grad()
        (ce + cfg.model.cost_kld * kld).backward()
        torch.nn.utils.clip_grad_value_(params, cfg.train.grad_clip_value)
        opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        val_ce, _ = losses(val_batch, torch.Generator().manual_seed(12345))
    return float(val_ce), seconds


def main() -> None:
    import torch
    import torch.nn.functional as F
    from torch_geometric.data import Batch
    from torch_geometric.utils import scatter

    from genlowdim.crystal.cdvae.training import load_split
    from genlowdim.crystal.cdvae.config import load_crystal_config

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--widths", default="0,256", help="comma-separated readout widths; 0 = num_scalars")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_crystal_config(ROOT / "configs/crystal/perov_5_quick.yaml")
    train = load_split(cfg, "train")
    val_batch = Batch.from_data_list(load_split(cfg, "val", 512))
    frac = scatter(F.one_hot(val_batch.atom_types - 1, 100).double(), val_batch.batch, dim=0, reduce="mean")
    floor = float(-(frac * torch.log(frac.clamp_min(1e-300))).sum(1).mean())
    rows = []
    for width in (int(w) for w in args.widths.split(",")):
        ce, seconds = train_width(cfg, width, train, val_batch, args.steps, args.lr)
        rows.append((width or cfg.model.encoder.num_scalars, ce, seconds))
        print(rows[-1], flush=True)
    print(f"\nencoder + composition head alone, {args.steps} steps at lr {args.lr}, batch 128, "
          f"{args.threads} thread(s); validation composition CE floor {floor:.3f} nats")
    print(f"{'readout width':>14}{'val comp CE':>13}{'seconds':>9}")
    for width, ce, seconds in rows:
        print(f"{width:>14}{ce:>13.3f}{seconds:>9.1f}")


if __name__ == "__main__":
    main()
