"""Command-line handlers of the crystal family.

``genlowdim train --config configs/crystal/X.yaml --out D`` and ``genlowdim sample --checkpoint C ...`` are
dispatched here by the top-level CLI; this module adds ``reconstruct``, ``optimize`` and ``demo``.
"""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this family's own command groups."""
    from genlowdim.crystal import data_cli

    data_cli.register(subparsers)
    p = subparsers.add_parser("reconstruct", help="encode and decode crystals of a split with a CDVAE checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", help="split of the checkpoint's dataset (train/val/test)")
    p.add_argument("--num", type=int, default=None, help="first N crystals of the split (default: all)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--weights", choices=["ema", "raw"], default="ema",
                   help="EMA weights when the run kept them (default) or the raw optimiser weights")
    add_sampling_flags(p, "recon_type_update")
    p.add_argument("--out", required=True)
    add_overwrite_flag(p)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_reconstruct)

    p = subparsers.add_parser("optimize", help="CDVAE latent optimisation of a property (SR5/SR10/SR15)")
    p.add_argument("--checkpoint", required=True, help="CDVAE checkpoint trained with a property head")
    p.add_argument("--property", default=None, help="property name (checked against the checkpoint's dataset)")
    p.add_argument("--property-model", default=None, help="property-predictor checkpoint used to score decodes")
    p.add_argument("--num", type=int, default=100)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--decode-every", type=int, default=555)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sampler", default="ald_fast")
    p.add_argument("--sampler-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", choices=["ema", "raw"], default="ema")
    add_sampling_flags(p)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_optimize)

    p = subparsers.add_parser("demo", help="train the demo CDVAE a few minutes, sample, evaluate, plot")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: the demo config's)")
    p.add_argument("--num", type=int, default=200, help="crystals to generate")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_demo)


def add_overwrite_flag(p: argparse.ArgumentParser) -> None:
    """``--overwrite``: discard another run's batches in ``--out`` instead of stopping."""
    p.add_argument("--overwrite", action="store_true",
                   help="discard results of other settings already in --out (default: resume only results "
                   "of the same settings, stop otherwise)")


def add_sampling_flags(p: argparse.ArgumentParser, type_field: str = "type_update") -> None:
    """``--step-lr`` and ``--type-update``: override the checkpoint's sampling config for one command."""
    p.add_argument("--step-lr", type=float, default=None,
                   help="step_lr of the chosen ALD sampler's spec (default: the checkpoint's)")
    p.add_argument("--type-update", choices=["argmax", "composition", "fixed"], default=None,
                   help=f"how types follow the decoder (default: the checkpoint's sampling.{type_field})")
    p.set_defaults(type_field=type_field)


def sampling_overrides(cfg, args: argparse.Namespace, sampler: str | None):
    """``cfg`` with the sampling settings given by :func:`add_sampling_flags` replaced."""
    from dataclasses import replace

    from genlowdim.cli import UsageError

    sampling = cfg.sampling
    if getattr(args, "step_lr", None) is not None:
        name = sampler or sampling.sampler
        if sampling.spec(name).method != "ald" or args.step_lr <= 0:
            raise UsageError(f"--step-lr {args.step_lr}: needs a positive value and an ALD sampler such as "
                             f"ald or ald_fast (got {name!r})")
        sampling = sampling.with_spec(name, step_lr=args.step_lr)
    if getattr(args, "type_update", None) is not None:
        sampling = replace(sampling, **{args.type_field: args.type_update})
    return replace(cfg, sampling=sampling) if sampling is not cfg.sampling else cfg


def train(args: argparse.Namespace) -> int:
    """``genlowdim train`` for ``family: crystal`` configs."""
    from genlowdim.crystal.training import train_cdvae
    from genlowdim.crystal.config import load_crystal_config
    from genlowdim.runtime import resolve_device

    cfg = load_crystal_config(args.config, args.overrides)
    result = train_cdvae(cfg, args.out, resume=args.resume, device=resolve_device(args.device))
    print(f"trained {result.steps} steps ({result.stopped_because}); best val {result.best_val}; "
          f"checkpoints in {result.out_dir}")
    return 0


def sample(args: argparse.Namespace, checkpoint: dict) -> int:
    """``genlowdim sample`` for crystal checkpoints: CIFs + samples.extxyz + manifest.json in --out."""
    from genlowdim.crystal.checkpoints import load_model
    from genlowdim.crystal.tasks import sample_crystals
    from genlowdim.runtime import resolve_device

    model, cfg = load_model(checkpoint, resolve_device(args.device), use_ema=args.weights == "ema",
                            task="cdvae")
    cfg = sampling_overrides(cfg, args, args.sampler)
    manifest = sample_crystals(model, cfg, args.num, args.out, batch_size=args.batch_size, seed=args.seed,
                               sampler=args.sampler, steps=args.steps, checkpoint=args.checkpoint,
                               overwrite=args.overwrite)
    print(f"wrote {manifest['count']} crystals to {args.out}")
    return 0


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from genlowdim.crystal.checkpoints import load_model
    from genlowdim.crystal.tasks import reconstruct
    from genlowdim.runtime import resolve_device

    model, cfg = load_model(args.checkpoint, resolve_device(args.device), use_ema=args.weights == "ema",
                            task="cdvae")
    cfg = sampling_overrides(cfg, args, args.sampler)
    summary = reconstruct(model, cfg, args.split, args.out, num=args.num, batch_size=args.batch_size,
                          seed=args.seed, sampler=args.sampler, steps=args.steps, overwrite=args.overwrite)
    print(f"wrote {summary['count']} predictions and truths to {args.out}; evaluate with\n  genlowdim evaluate "
          f"{args.out}/predictions.extxyz --reference {args.out}/truth.extxyz --mode reconstruction "
          f"--out {args.out}/eval")
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    from genlowdim.crystal.checkpoints import load_model
    from genlowdim.crystal.optimize import optimize_property
    from genlowdim.runtime import resolve_device

    device = resolve_device(args.device)
    model, cfg = load_model(args.checkpoint, device, use_ema=args.weights == "ema", task="cdvae")
    cfg = sampling_overrides(cfg, args, args.sampler)
    prop_model = load_model(args.property_model, device, task="property")[0] if args.property_model else None
    result = optimize_property(model, cfg, args.out, property_name=args.property, num=args.num,
                               steps=args.steps, decode_every=args.decode_every, lr=args.lr,
                               sampler=args.sampler, sampler_steps=args.sampler_steps, seed=args.seed,
                               property_model=prop_model)
    print({k: result[k] for k in ("SR5", "SR10", "SR15")})
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from genlowdim.crystal.demo import run_demo
    from genlowdim.runtime import resolve_device

    run_demo(args.out, minutes=args.minutes, num=args.num, device=resolve_device(args.device))
    return 0


def property_fn(checkpoint: dict):
    """``genlowdim evaluate --property-model``: the evaluation's ``property_fn`` of a property-predictor
    checkpoint payload (CheckpointError when it holds another kind of model)."""
    from genlowdim.crystal.checkpoints import property_fn_from_checkpoint

    return property_fn_from_checkpoint(checkpoint)
