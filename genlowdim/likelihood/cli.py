"""Command-line handlers of the likelihood family.

- ``genlowdim train --config configs/likelihood/circle_r10.yaml --out DIR [--set k=v]``: fits the
  unperturbed (σ̃ = 0) and perturbed MLE, writes ``DIR/metrics.json``, ``DIR/model.pt``, ``DIR/samples.png``.
- ``genlowdim sample --checkpoint DIR/model.pt --num N --seed S --out D [--sampler pushforward|noisy]``:
  samples g(Z) (default) or g(Z) + σ̂ε from the perturbed model into ``D/samples.npy``.
- ``genlowdim likelihood sweep --config configs/likelihood/sweep.yaml --out DIR [--kind sigma|n|both]``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``genlowdim likelihood sweep``."""
    group = subparsers.add_parser("likelihood", help="noise-perturbed likelihood experiments")
    sub = group.add_subparsers(dest="likelihood_command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("sweep", help="W1 against σ̃ for several D, and W1 against n")
    p.add_argument("--config", required=True, help="sweep YAML (base run config + sweep section)")
    p.add_argument("--out", required=True, help="output directory (JSON rows, PNG plots)")
    p.add_argument("--kind", choices=["sigma", "n", "both"], default="both")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--overwrite", action="store_true", help="clear the finished rows of --out instead of "
                   "resuming them")
    p.set_defaults(func=_cmd_sweep, start=lambda a: f"{a.kind} sweep with {a.config} into {a.out}")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from genlowdim.config import load_config
    from genlowdim.likelihood.config import SweepConfig
    from genlowdim.likelihood.sweeps import n_sweep, sigma_sweep

    cfg = load_config(SweepConfig, args.config, args.overrides)
    _check(lambda: _validate_sweep(cfg, args.config))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with _threads(_env_threads()):
        if args.kind in ("sigma", "both"):
            sigma_sweep(cfg, args.out, overwrite=args.overwrite)
        if args.kind in ("n", "both"):
            n_sweep(cfg, args.out, overwrite=args.overwrite)
    return 0


def _env_threads() -> int | None:
    value = os.environ.get("GENLOWDIM_THREADS")
    return int(value) if value else None


def _validate_sweep(cfg, where: str) -> None:
    from genlowdim.likelihood.config import check_run_config

    check_run_config(cfg.base, f"{where}: base")
    if min(cfg.sweep.perturbation_stds, default=0) < 0 or cfg.sweep.n_sweep_perturbation_std < 0:
        raise ValueError(f"{where}: sweep perturbation stds (σ̃) must be >= 0")
    if len(cfg.sweep.sample_sizes) < 2:
        raise ValueError(f"{where}: sweep.sample_sizes needs at least two sizes to fit a slope")


@contextlib.contextmanager
def _threads(num: int | None):
    """Run with ``num`` intra-op threads (restored afterwards). The fits are many small ops on
    (n × nodes) matrices, where extra threads only add synchronisation: one thread is the default."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(num or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check(fn) -> None:
    """Turn ValueError from config checks into the CLI's clean usage error."""
    from genlowdim.errors import UsageError

    try:
        fn()
    except ValueError as err:
        raise UsageError(str(err)) from err


def train(args: argparse.Namespace) -> int:
    """Fit σ̃ = 0 and the config's σ̃; print and write the metrics."""
    from genlowdim.config import load_config
    from genlowdim.likelihood.config import RunConfig, check_run_config
    from genlowdim.likelihood.sweeps import run_experiment

    cfg = load_config(RunConfig, args.config, args.overrides)
    _check(lambda: check_run_config(cfg, args.config))
    if getattr(args, "device", "auto") not in ("auto", "cpu"):
        print(f"note: likelihood fits run on the CPU (requested device {args.device!r} ignored)")
    if args.resume:
        print("note: likelihood runs take about a minute; --resume refits both models")
    with _threads(_env_threads()):
        metrics = run_experiment(cfg, args.out)
    for label in ("unperturbed", "perturbed", "diffusion"):
        if label in metrics:
            m = metrics[label]
            head = (f"σ̃={m['perturbation_std']:<6g} σ̂={m['sigma_hat']:.4f}" if "sigma_hat" in m
                    else f"{m['sampler']}, {m['sample_steps']} steps")
            print(f"{label:>12}: {head} W1={m['w1']:.4f} support distance={m['support_distance']:.4f} "
                  f"precision={m['precision']:.3f} recall={m['recall']:.3f} "
                  f"held-out log p={m.get('heldout_loglik', float('nan')):.2f}")
    print(f"W1 between two fresh true samples (floor): {metrics['w1_true_vs_true']:.4f}")
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def sample(args: argparse.Namespace, checkpoint: dict) -> int:
    """Draw ``--num`` samples from the perturbed model of a checkpoint into ``OUT/samples.npy``."""
    import numpy as np
    import torch

    from genlowdim.errors import UsageError
    from genlowdim.config import from_dict
    from genlowdim.likelihood.config import RunConfig
    from genlowdim.likelihood.sweeps import build_model
    from genlowdim.runtime import atomic_write_bytes, write_json

    kind = args.sampler or "pushforward"
    if kind not in ("pushforward", "noisy"):
        raise UsageError(f"--sampler: the likelihood family offers 'pushforward' (g(Z)) or 'noisy' "
                         f"(g(Z) + σ̂ε), got {kind!r}")
    if args.num < 1:
        raise UsageError(f"--num must be positive, got {args.num}")
    cfg = from_dict(RunConfig, checkpoint["config"], where=args.checkpoint)
    model = build_model(cfg)
    model.load_state_dict(checkpoint["models"]["perturbed"])
    x = model.sample(args.num, torch.Generator().manual_seed(args.seed), with_noise=kind == "noisy")
    buf = io.BytesIO()
    np.save(buf, x.numpy())
    atomic_write_bytes(Path(args.out) / "samples.npy", buf.getvalue())
    write_json(Path(args.out) / "samples.json", {"num": args.num, "seed": args.seed, "sampler": kind,
                                                  "sigma_hat": model.sigma.item(), "shape": list(x.shape)})
    print(f"wrote {args.num} {kind} samples to {Path(args.out) / 'samples.npy'}")
    return 0
