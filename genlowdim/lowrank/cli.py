"""Command-line handlers of the lowrank family (thin shells over ``train``, ``analysis`` and ``digits``).

``genlowdim train --config configs/lowrank/molrg.yaml --out DIR`` → ``DIR/metrics.json`` + ``DIR/model.pt``;
``genlowdim sample --checkpoint DIR/model.pt --out S`` → ``S/samples.npy`` + ``S/summary.json``;
``genlowdim lowrank sweep|memorisation|digits --config ... --out DIR`` → JSON + PNG (+ a printed table).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``genlowdim lowrank {sweep,memorisation,digits}``."""
    group = subparsers.add_parser("lowrank", help="mixture-of-low-rank-Gaussians experiments")
    sub = group.add_subparsers(dest="lowrank_command", metavar="EXPERIMENT")
    sub.required = True
    for name, func, text in (
            ("sweep", _cmd_sweep, "phase transition of subspace recovery over N_k and d (JSON + PNG)"),
            ("memorisation", _cmd_memorisation, "memorisation vs generalisation of an MLP denoiser vs N_k/d"),
            ("digits", _cmd_digits, "union of subspaces and Jacobian ranks on scikit-learn digits")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True)
        p.add_argument("--out", required=True, help="output directory (results written incrementally)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
        p.set_defaults(func=func, start=lambda a: f"{a.lowrank_command} with {a.config} into {a.out}")
        if name == "sweep":
            p.add_argument("--overwrite", action="store_true",
                           help="clear the finished cells of --out instead of resuming them")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from genlowdim.config import load_config

    from .analysis import run_phase_transition
    from .config import SweepConfig

    run_phase_transition(load_config(SweepConfig, args.config, args.overrides), args.out,
                         overwrite=args.overwrite)
    return 0


def _cmd_memorisation(args: argparse.Namespace) -> int:
    from genlowdim.config import load_config

    from .config import MemorisationConfig
    from .analysis import run_memorisation

    run_memorisation(load_config(MemorisationConfig, args.config, args.overrides), args.out)
    return 0


def _cmd_digits(args: argparse.Namespace) -> int:
    from genlowdim.config import load_config

    from .config import DigitsConfig
    from .digits import run_digits

    run_digits(load_config(DigitsConfig, args.config, args.overrides), args.out)
    return 0


def train(args: argparse.Namespace) -> int:
    """``genlowdim train`` for ``family: lowrank`` configs: fit, measure, checkpoint, metrics.json."""
    from genlowdim.config import load_config, to_dict
    from genlowdim.runtime import load_checkpoint, resolve_device, save_checkpoint, write_json

    from .config import RunConfig
    from .analysis import run_training

    cfg = load_config(RunConfig, args.config, args.overrides)
    out = Path(args.out)
    ckpt = out / "model.pt"
    if getattr(args, "resume", False) and ckpt.is_file() and (out / "metrics.json").is_file():
        payload = load_checkpoint(ckpt, family="lowrank")
        if payload["config"] == to_dict(cfg):
            print(f"{ckpt}: finished run with the same config found; nothing to resume")
            return 0
    device = resolve_device(args.device)
    from .analysis import torch_threads

    # these models are tiny: on a shared CPU one intra-op thread is several times faster than two
    with torch_threads(1 if device.type == "cpu" else torch_num_threads()):
        model, metrics, extra = run_training(cfg, device=device)
    save_checkpoint(ckpt, {"family": "lowrank", "config": to_dict(cfg), "state_dict": model.state_dict(),
                           **extra})
    write_json(out / "metrics.json", {"name": "lowrank_train", **metrics, "config": to_dict(cfg)})
    return 0


def torch_num_threads() -> int:
    import torch

    return torch.get_num_threads()


def sample(args: argparse.Namespace, checkpoint: dict) -> int:
    """``genlowdim sample`` for lowrank checkpoints: samples.npy + summary.json (distances to subspaces)."""
    import numpy as np
    import torch

    from genlowdim.config import from_dict
    from genlowdim.core.samplers import get_sampler
    from genlowdim.runtime import library_versions, progress, write_json

    from .analysis import memorisation_stats, sample_with
    from .config import RunConfig
    from .train import build_model

    cfg = from_dict(RunConfig, checkpoint["config"], where=f"{args.checkpoint}:config")
    from genlowdim.errors import UsageError

    name = args.sampler or cfg.sample.sampler
    try:
        get_sampler(name)
    except ValueError as err:
        raise UsageError(f"--sampler: {err}") from None
    if args.steps is not None and args.levels is not None:
        raise UsageError("--steps is the deprecated form of --levels; give --levels alone")
    if args.steps is not None:
        print("genlowdim: warning: --steps is deprecated; for a low-rank model it is --levels", file=sys.stderr)
    steps = args.levels or args.steps or cfg.sample.steps
    if args.num < 1 or args.batch_size < 1 or steps < 1:
        raise UsageError(f"sample: --num, --batch-size and --levels must be >= 1, got {args.num}, "
                         f"{args.batch_size}, {steps}")
    from genlowdim.runtime import resolve_device

    device = resolve_device(args.device)
    model = build_model(cfg)
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    gen = torch.Generator(device).manual_seed(args.seed)
    chunks = []
    for start in progress(range(0, args.num, args.batch_size), desc="sample"):
        num = min(args.batch_size, args.num - start)
        chunks.append(sample_with(model, num, cfg.data.ambient_dim, sampler=name, steps=steps,
                                  sigma_min=cfg.sample.sigma_min, sigma_max=cfg.sample.sigma_max,
                                  rho=cfg.sample.rho, generator=gen, device=device).cpu())
    samples = torch.cat(chunks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", samples.numpy())
    stats = memorisation_stats(samples, checkpoint["train_x"], checkpoint["true_bases"])
    write_json(out / "summary.json", {"name": "lowrank_samples", "checkpoint": str(args.checkpoint),
                                      "sampler": name, "steps": steps, "seed": args.seed, "num": args.num,
                                      "device": str(device),
                                      **stats, "versions": library_versions()})
    print(f"{args.num} samples -> {out / 'samples.npy'}; median distance to the true subspaces / norm = "
          f"{stats['median_rel_distance_to_subspaces']:.4f}, copies of training points: "
          f"{stats['copy_fraction']:.3f}")
    return 0
