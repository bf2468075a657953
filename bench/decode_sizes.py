"""Benchmark: one sampler step of a CDVAE decode for batches of 5-, 12- and 24-atom cells.

The model is an untrained CDVAE with the networks of ``configs/crystal/perov_5_pretrained.yaml`` and
``data.max_atoms=24`` (speed does not depend on the weights). Each batch holds ``--crystals`` random cells
of one size: cubic, 2.3 Å·n^(1/3) edges (perov_5's density), uniform fractional coordinates, types drawn
from three elements. One step is what the sampling loop does per accepted step: one decoder call
(periodic graph, e3nn stack, heads) and the ``composition`` type update (``TypeState``).

Printed per size: decoder calls per second, atoms per second (calls/s x atoms in the batch) and its ratio
to the 5-atom figure (the issue's target: at most 6x), and the time of the type update alone on the step's
log-probabilities, for cells of two and of three elements: the batched solver of
``genlowdim.crystal.cdvae.assignment`` against ``linear_sum_assignment`` one crystal at a time (the path
cells beyond 6 atoms took before; 5-atom cells took, and take, the batched brute force).
Usage::

    python bench/decode_sizes.py [--crystals 64] [--reps 5] [--device cpu|cuda] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

SIZES = (5, 12, 24)
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "crystal" / "perov_5_pretrained.yaml"


def build(device):
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.crystal.cdvae.training import build_model

    cfg = load_crystal_config(CONFIG, ["data.max_atoms=24"])
    torch.manual_seed(0)
    return build_model(cfg, cfg.data.max_atoms).eval().to(device)


def random_cells(n, crystals, latent_dim, gen, device):
    from genlowdim.crystal.geometry.lattice import frac_to_cart, lattice_from_params

    num_atoms = torch.full((crystals,), n)
    batch = torch.repeat_interleave(torch.arange(crystals), num_atoms).to(device)
    lengths = torch.full((crystals, 3), 2.3 * n ** (1 / 3))
    lattice = lattice_from_params(lengths, torch.full((crystals, 3), 90.0)).to(device)
    frac = torch.rand((len(batch), 3), generator=gen).to(device)
    types = torch.tensor([8, 22, 38])[torch.randint(0, 3, (len(batch),), generator=gen)].to(device)
    z = torch.randn((crystals, latent_dim), generator=gen).to(device)
    return frac_to_cart(frac, lattice, batch), types, z, lattice, batch


def timed(fn, reps, device):
    fn()                                                    # warm-up (graph shapes, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps


@torch.no_grad()
def measure(model, n, args, gen):
    from genlowdim.crystal.cdvae.assignment import assign_types, assign_types_per_crystal
    from genlowdim.crystal.cdvae.sampling import DecoderDenoiser, TypeState

    x, types, z, lattice, batch = random_cells(n, args.crystals, model.cfg.latent_dim, gen, args.device)
    state = TypeState(types, batch, "composition")
    den = DecoderDenoiser(model.decoder, z, lattice, batch, state)
    sigma = torch.tensor(0.5, device=args.device)

    def step():
        d = den(x, sigma)
        state({"denoised": d})

    step_s = timed(step, args.reps, args.device)
    den(x, sigma)
    log_probs = torch.log_softmax(state._evaluations[-1][1], -1)
    row = {"calls_per_s": 1 / step_s, "atoms_per_s": len(batch) / step_s}
    for k in (2, 3):                                        # cells of k elements: 8, 22 (and 38)
        kinds = torch.tensor([8, 22, 38])[torch.randint(0, k, types.shape, generator=gen)].to(types.device)
        row[f"new_{k}"] = 1e3 * timed(lambda: assign_types(log_probs, kinds, batch), args.reps, args.device)
        row[f"loop_{k}"] = 1e3 * timed(lambda: assign_types_per_crystal(log_probs, kinds, batch), args.reps,
                                       args.device)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crystals", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, gen = build(args.device), torch.Generator().manual_seed(0)
    rows = {n: measure(model, n, args, gen) for n in SIZES}
    base = rows[SIZES[0]]["atoms_per_s"]
    print(f"one sampler step (decoder call + composition type update), {args.crystals} crystals a batch, "
          f"{args.device}, {args.threads} thread(s), {args.reps} reps")
    print("| atoms/cell | decoder calls/s | atoms/s | 5-atom atoms/s ÷ this | type update ms, 2 types: batched "
          "/ per-crystal LSA | 3 types: batched / per-crystal LSA |")
    print("|---|---|---|---|---|---|")
    for n, r in rows.items():
        print(f"| {n} | {r['calls_per_s']:.2f} | {r['atoms_per_s']:.0f} | {base / r['atoms_per_s']:.2f}x "
              f"| {r['new_2']:.2f} / {r['loop_2']:.2f} | {r['new_3']:.2f} / {r['loop_3']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
