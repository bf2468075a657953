"""Command line: ``genlowdim <command> ...``.

The CLI is a thin shell. Shared commands (``train``, ``sample``) dispatch on the config's ``family`` key or
on the checkpoint's family; each family adds its own commands through ``register(subparsers)`` in its
``cli`` module. Heavy imports happen inside handlers so ``genlowdim --help`` stays fast.

Exit codes (docs/cli.md): 0 success, 1 a check that found problems, 2 usage or input errors (one line
on stderr, no traceback), 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from genlowdim.errors import EXIT_INTERRUPTED, EXIT_USAGE, CheckpointError, UsageError, require_positive

__all__ = ["UsageError", "build_parser", "main", "require_positive"]

FAMILIES = {
    "crystal": "genlowdim.crystal.cli",
    "lowrank": "genlowdim.lowrank.cli",
    "likelihood": "genlowdim.likelihood.cli",
}
# modules that add command groups of their own
REGISTRARS = ["genlowdim.crystal.cli", "genlowdim.metrics.cli", "genlowdim.physics.cli",
              "genlowdim.lowrank.cli", "genlowdim.likelihood.cli"]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (what is wrong, where the help is) instead of the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def shipped_model_file(name: str, kind: str = "cdvae"):
    """Path of a shipped model's file when ``name`` is one (its hash checked), else None."""
    from genlowdim.crystal.pretrained import available_models, resolve_model

    return resolve_model(name, kind) if name in available_models() else None


def _family_module(family: str, where: str):
    if family not in FAMILIES:
        raise UsageError(f"{where}: unknown family {family!r}; expected one of {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[family])


def load_property_fn(checkpoint: str):
    """``--property-model``: the evaluation's ``property_fn`` from a property-predictor checkpoint or the name
    of a shipped model (clear errors otherwise). The checkpoint's family builds it (its CLI module's
    ``property_fn(payload)``), as ``sample`` dispatches, so that the metrics stay free of any model family."""
    from pathlib import Path

    from genlowdim.runtime import load_checkpoint

    if not Path(checkpoint).is_file():
        shipped = shipped_model_file(checkpoint, "property")
        if shipped is None:
            raise UsageError(f"--property-model {checkpoint}: no such checkpoint file or shipped model")
        checkpoint = str(shipped)
    try:
        payload = load_checkpoint(checkpoint)
        build = getattr(_family_module(payload.get("family"), checkpoint), "property_fn", None)
        if build is None:
            raise UsageError(f"--property-model {checkpoint}: a {payload.get('family')!r} checkpoint does not "
                             f"predict crystal properties")
        return build(payload)
    except CheckpointError as err:
        raise UsageError(f"--property-model {checkpoint}: {err}") from err


def _cmd_train(args: argparse.Namespace) -> int:
    from genlowdim.config import load_yaml

    family = load_yaml(args.config).get("family")
    if family is None:
        raise UsageError(f"{args.config}: the config needs a top-level 'family' key "
                         f"({', '.join(sorted(FAMILIES))})")
    if args.data_dir is not None and family != "crystal":
        raise UsageError(f"--data-dir applies to crystal configs; {args.config} is a {family!r} config")
    return _family_module(family, args.config).train(args)


def _cmd_sample(args: argparse.Namespace) -> int:
    from genlowdim.runtime import load_checkpoint

    from genlowdim.crystal.commands import resolve_checkpoint

    require_positive(args, "num", "batch_size", "steps", "levels", "steps_per_level")
    resolve_checkpoint(args)   # --model NAME: the shipped model's file of its family
    payload = load_checkpoint(args.checkpoint)
    crystal_only = [flag for flag, value in (("--step-lr", args.step_lr), ("--type-update", args.type_update),
                                             ("--steps-per-level", args.steps_per_level),
                                             ("--protocol", args.protocol), ("--target", args.target),
                                             ("--target-source", args.target_source),
                                             ("--latent-source", args.latent_source), ("--pool-size", args.pool_size))
                    if value is not None]
    if payload["family"] != "crystal" and crystal_only:
        raise UsageError(f"{' and '.join(crystal_only)} apply to crystal checkpoints; {args.checkpoint} is "
                         f"a {payload['family']!r} checkpoint")
    return _family_module(payload["family"], args.checkpoint).sample(args, payload)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    p.add_argument("--data-dir", default=None, help="crystal configs: folder holding data.dataset "
                   "(DIR/NAME/{train,val,test}.csv.gz, as genlowdim data import writes)")
    p.set_defaults(func=_cmd_train, start=lambda a: f"training from {a.config} into {a.out}"
                   + (" (resuming)" if a.resume else ""))

    p = sub.add_parser("sample", help="draw samples from a trained checkpoint (any family)")
    from genlowdim.crystal.cli import (add_device_flag, add_model_flags, add_overwrite_flag, add_sampling_flags,
                                      add_target_flags, add_weights_flag)

    add_model_flags(p)
    p.add_argument("--num", type=int, default=1000, help="number of samples")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    add_device_flag(p)
    add_weights_flag(p)
    add_sampling_flags(p, "sample")   # --sampler, --levels (--steps) for every family, the rest for crystals only
    add_target_flags(p)               # crystals only
    add_overwrite_flag(p)
    p.set_defaults(func=_cmd_sample,
                   start=lambda a: f"{a.num:,} samples from {a.model or a.checkpoint} into {a.out}")

    for name in REGISTRARS:
        importlib.import_module(name).register(sub)
    parser.set_defaults(load_property_fn=load_property_fn)   # for commands that score with --property-model
    return parser


def announce(args: argparse.Namespace) -> None:
    """Print the command's first line, what it is about to do, before any numerical library is imported
    (torch alone takes seconds to import on a busy machine). A command whose parser sets ``start`` (a
    function of the parsed arguments) gets one; none when its output is JSON or in a second DDP process."""
    start = getattr(args, "start", None)
    if start is None or getattr(args, "json", False) or os.environ.get("RANK", "0") != "0":
        return
    print(f"genlowdim {args.command}: {start(args)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (argparse's own errors exit with 2 via SystemExit)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from genlowdim.config import ConfigError

    try:
        announce(args)
        return int(args.func(args) or 0)
    except (UsageError, ConfigError, CheckpointError, FileNotFoundError, FileExistsError) as err:
        print(f"genlowdim: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("genlowdim: interrupted (finished batches and checkpoints are kept; rerun to continue)",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror.lower()}"
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":  # pragma: no cover
    # ``python -m genlowdim.cli``: run the imported module, not this ``__main__`` copy of it, so that
    # everything (handlers, registries) is defined once; ``python -m genlowdim`` is the documented route.
    from genlowdim.cli import main as _main

    sys.exit(_main())
