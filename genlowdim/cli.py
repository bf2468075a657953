"""Command line: ``genlowdim <command> ...``.

The CLI is a thin shell. Shared commands (``train``, ``sample``) dispatch on the config's ``family`` key or
on the checkpoint's family; each family adds its own commands through ``register(subparsers)`` in its
``cli`` module. Heavy imports happen inside handlers so ``genlowdim --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

FAMILIES = {
    "crystal": "genlowdim.crystal.cli",
    "lowrank": "genlowdim.lowrank.cli",
    "likelihood": "genlowdim.likelihood.cli",
}
# modules that add command groups of their own
REGISTRARS = ["genlowdim.crystal.cli", "genlowdim.metrics.cli", "genlowdim.lowrank.cli",
              "genlowdim.likelihood.cli"]


class UsageError(ValueError):
    """Bad command-line input; printed without a traceback."""


def _family_module(family: str, where: str):
    if family not in FAMILIES:
        raise UsageError(f"{where}: unknown family {family!r}; expected one of {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[family])


def _cmd_train(args: argparse.Namespace) -> int:
    from genlowdim.config import load_yaml

    family = load_yaml(args.config).get("family")
    if family is None:
        raise UsageError(f"{args.config}: the config needs a top-level 'family' key "
                         f"({', '.join(sorted(FAMILIES))})")
    return _family_module(family, args.config).train(args)


def _cmd_sample(args: argparse.Namespace) -> int:
    from genlowdim.runtime import load_checkpoint

    payload = load_checkpoint(args.checkpoint)
    if payload["family"] != "crystal" and (args.step_lr is not None or args.type_update is not None):
        raise UsageError(f"--step-lr and --type-update apply to crystal checkpoints; {args.checkpoint} is "
                         f"a {payload['family']!r} checkpoint")
    return _family_module(payload["family"], args.checkpoint).sample(args, payload)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genlowdim",
        description="Generative models of crystals and of low-dimensional distributions.")
    from genlowdim import __version__

    parser.add_argument("--version", action="version", version=f"genlowdim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", help="train a model from a YAML config (any family)")
    p.add_argument("--config", required=True, help="YAML file; its 'family' key picks the model family")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, metrics.json)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.latent_dim=128 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("sample", help="draw samples from a trained checkpoint (any family)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--num", type=int, default=1000, help="number of samples")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default=None, help="sampler name (family default when omitted)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (family default when omitted)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--device", default="auto")
    p.add_argument("--weights", choices=["ema", "raw"], default="ema",
                   help="EMA weights when the run kept them (default) or the optimiser's raw weights")
    from genlowdim.crystal.cli import add_overwrite_flag, add_sampling_flags

    add_sampling_flags(p)   # crystal checkpoints only
    add_overwrite_flag(p)
    p.set_defaults(func=_cmd_sample)

    for name in REGISTRARS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from genlowdim.config import ConfigError
    from genlowdim.runtime import CheckpointError

    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f"genlowdim: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
