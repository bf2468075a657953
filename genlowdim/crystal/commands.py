"""Handlers of the crystal commands (the flags are :mod:`genlowdim.crystal.cli`): each resolves the user's
choices once, loads the model and calls a task of :mod:`genlowdim.crystal.tasks`. Heavy imports happen inside
the handlers so that ``genlowdim --help`` stays fast."""
from __future__ import annotations

import argparse

from genlowdim.crystal.cdvae.from_args import STEP_FLAGS, protocol_config, sample_pool_size
from genlowdim.errors import UsageError, require_positive

__all__ = ["STEP_FLAGS", "protocol_config", "resolve_checkpoint", "load_crystals", "family_crystals",
           "check_split", "reject_cdvae_flags", "require_latent", "shipped_property_model", "train", "sample",
           "property_fn", "target_margin", "cmd_models", "cmd_models_export", "cmd_demo"]


def resolve_checkpoint(args: argparse.Namespace, kind: str | None = None) -> str:
    """The checkpoint file behind ``--checkpoint`` or ``--model`` (also stored back in ``args.checkpoint``).
    ``kind``: the shipped model's file of that kind (e.g. ``property``); None: its model's file, the one of
    the kinds of :data:`~genlowdim.crystal.families.FAMILIES` that its manifest lists."""
    from genlowdim.crystal.families import FAMILIES
    from genlowdim.crystal.pretrained import checkpoint_path

    args.checkpoint = str(checkpoint_path(args.checkpoint, args.model, kind or tuple(FAMILIES)))
    return args.checkpoint


def load_crystals(args: argparse.Namespace):
    """(checkpoint payload, the model as the tasks see it) of ``--checkpoint``/``--model``: the checkpoint's
    model kind picks its family (:mod:`genlowdim.crystal.families`), which builds it from the command's
    arguments. A CDVAE-only flag given to another family is a UsageError."""
    from genlowdim.runtime import load_checkpoint

    payload = load_checkpoint(resolve_checkpoint(args), family="crystal")
    return payload, family_crystals(payload, args)


def family_crystals(payload: dict, args: argparse.Namespace):
    """The model of the loaded checkpoint ``payload`` (of ``args.checkpoint``) through its family; a
    CDVAE-only flag given to another family is a UsageError."""
    from genlowdim.crystal.families import crystal_model, model_kind

    if model_kind(payload) != "cdvae":
        reject_cdvae_flags(args, args.checkpoint)
    return crystal_model(payload, args, args.checkpoint)


def require_latent(crystals, path: str, what: str) -> None:
    """UsageError (one line) unless the model has the contract's latent hooks and a property head, which
    ``what`` (``optimize``, ``--target``) needs; it names the missing hooks."""
    from genlowdim.crystal.contract import missing_latent_hooks

    missing = missing_latent_hooks(crystals)
    if missing:
        raise UsageError(f"{what} needs a crystal model with a latent space; {path} holds one without the latent "
                         f"hooks {', '.join(missing)} (genlowdim.crystal.contract.LatentCrystalModel)")
    if crystals.property_head is None:
        raise UsageError(f"{what} needs a property head on the model's latent space; {path} has none")


# flags that set how a CDVAE decodes (its protocol): (flag, attribute)
CDVAE_FLAGS = (("--protocol", "protocol"), ("--sampler", "sampler"), ("--steps", "steps"), ("--levels", "levels"),
               ("--steps-per-level", "steps_per_level"), ("--step-lr", "step_lr"), ("--type-update", "type_update"),
               ("--latent", "latent"), ("--constraint", "constraint"))
# csp's flags of a CDVAE's latent source (optimize's --opt-steps is its own: the Adam steps of any family)
CDVAE_CSP_FLAGS = (("--method", "method"), ("--draws", "draws"), ("--opt-steps", "opt_steps"))


def reject_cdvae_flags(args: argparse.Namespace, path: str) -> None:
    """UsageError naming the CDVAE-only flags given for ``path``, a checkpoint of another crystal family."""
    flags = CDVAE_FLAGS + (CDVAE_CSP_FLAGS if getattr(args, "task", None) == "csp" else ())
    given = [flag for flag, name in flags if getattr(args, name, None) is not None]
    if given:
        raise UsageError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to CDVAE checkpoints; "
                         f"{path} holds another kind of crystal model")


def check_split(split: str, dataset: str) -> None:
    """UsageError unless ``split`` is a split of the model's dataset ``dataset``."""
    from genlowdim.structures.datasets import SPLITS

    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: not a split of the checkpoint's dataset {dataset!r}; "
                         f"use {', '.join(SPLITS[:-1])} or {SPLITS[-1]}")


def train(args: argparse.Namespace) -> int:
    """``genlowdim train`` for ``family: crystal`` configs."""
    from dataclasses import replace
    from pathlib import Path

    from genlowdim.crystal.cdvae.training import train_cdvae
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.runtime import resolve_device

    last = Path(args.out) / "last.pt"
    if last.exists() and not args.resume:   # checked before the dataset is loaded
        raise UsageError(f"--out {args.out}: already holds a run ({last.name}); add --resume to continue it "
                         f"or choose another --out")
    cfg = load_crystal_config(args.config, args.overrides)
    if getattr(args, "data_dir", None) is not None:
        cfg = replace(cfg, data=replace(cfg.data, data_dir=args.data_dir))
    if args.resume:   # also before the dataset is loaded: an intact last.pt written with these settings
        from genlowdim.config import to_dict
        from genlowdim.resume import check_resume

        check_resume(args.out, to_dict(cfg), family="crystal")
    result = train_cdvae(cfg, args.out, resume=args.resume, device=resolve_device(args.device))
    print(f"trained {result.steps} steps ({result.stopped_because}); best val {result.best_val}; "
          f"checkpoints in {result.out_dir}")
    return 0


TARGET_SOURCE = "prior"      # where --target screens latents by default (docs/csp.md)
TARGET_POOL_SIZE = 2000      # training crystals encoded for --target-source posterior (measured so, docs/csp.md)


def target_margin(args: argparse.Namespace) -> float:
    """``--target-margin``, else the shipped model's default (its manifest's ``defaults.target_margin``: one
    val std of its property head's error), else 0."""
    if getattr(args, "target_margin", None) is not None:
        return float(args.target_margin)
    if getattr(args, "model", None):
        from genlowdim.crystal.pretrained import available_models

        return float(available_models().get(args.model, {}).get("defaults", {}).get("target_margin", 0.0))
    return 0.0


def _check_target_flags(args: argparse.Namespace) -> None:
    """UsageError for settings of ``--target`` given without it, and for ``--pool-size`` without a posterior
    source to use it."""
    if getattr(args, "target", None) is None and any(
            getattr(args, k, None) is not None for k in ("target_source", "target_draws", "target_margin")):
        raise UsageError("--target-source, --target-draws and --target-margin apply with --target")
    require_positive(args, "target_draws")
    if getattr(args, "pool_size", None) is not None and "posterior" not in (
            getattr(args, "latent_source", None), getattr(args, "target_source", None)):
        raise UsageError("--pool-size applies with --latent-source posterior (or --target-source posterior)")


def _aim(args: argparse.Namespace, crystals):
    """The :class:`~genlowdim.crystal.tasks.targeted.Aim` of ``--target`` (None without one); UsageError when
    the model cannot aim at it (no latent hooks, no property head, another property, an empty target)."""
    if getattr(args, "target", None) is None:
        return None
    from genlowdim.crystal.tasks.targeted import Aim, parse_target
    from genlowdim.structures.registry import DATASETS

    require_latent(crystals, args.checkpoint, "--target")
    spec = DATASETS.get(crystals.dataset)
    target = parse_target(args.target, spec.property if spec is not None else None)
    margin = target_margin(args)
    if margin < 0:
        raise UsageError(f"--target-margin must be >= 0, got {margin:g}")
    target.shrunk(margin)   # UsageError when nothing of the target is left
    pool = None
    source = getattr(args, "target_source", None) or getattr(args, "latent_source", None) or TARGET_SOURCE
    if source == "posterior":
        from genlowdim.crystal.latents import encode_pool

        size = sample_pool_size(args, TARGET_POOL_SIZE)
        pool = encode_pool(crystals, crystals.load_split("train", size or None))
    return Aim(target, max_draws=getattr(args, "target_draws", None) or 1000, pool=pool, margin=margin,
               head=crystals.property_head)


def sample(args: argparse.Namespace, checkpoint: dict) -> int:
    """``genlowdim sample`` for crystal checkpoints: CIFs + samples.extxyz + manifest.json in --out. The
    checkpoint's family builds the model (a CDVAE with its protocol); ``--target`` aims at a property through
    the latent hooks."""
    from genlowdim.crystal.tasks.generate import write_samples

    _check_target_flags(args)
    crystals = family_crystals(checkpoint, args)
    aim = _aim(args, crystals)
    settings, entries = crystals.run_entries("sample")
    manifest = write_samples(crystals, args.num, args.out, batch_size=args.batch_size, seed=args.seed,
                             overwrite=args.overwrite, settings=settings, aim=aim,
                             manifest={**entries, "checkpoint": args.checkpoint})
    record = entries.get("protocol")
    how = ""
    if isinstance(record, dict):
        source = ", z around the encoded training crystals" if record.get("latent_source") == "posterior" else ""
        how = f" ({record['protocol']} protocol, sampler {record['sampler']}{source})"
    aimed = "" if aim is None else "; " + _aim_report(args, aim.target, manifest)
    print(f"wrote {manifest['count']} crystals to {args.out}{how}{aimed}")
    return 0


def shipped_property_model(model: str | None) -> str | None:
    """The property predictor file of shipped model ``model`` (sha256 checked), None when ``model`` is None
    or ships none."""
    from genlowdim.crystal.pretrained import available_models

    if model is None or "property" not in available_models().get(model, {}).get("files", {}):
        return None
    return resolve_checkpoint(argparse.Namespace(checkpoint=None, model=model), "property")


def _aim_report(args: argparse.Namespace, target, manifest: dict) -> str:
    """The account of ``sample --target``; a shipped model's property predictor also scores the crystals."""
    from genlowdim.crystal.tasks.targeted import check_with_predictor, describe_aim

    predictor = shipped_property_model(args.model)
    if predictor is not None and manifest.get("count"):
        manifest = check_with_predictor(args.out, target, predictor, manifest,
                                        name=f"{args.model}'s shipped property predictor")
    return describe_aim(manifest, target)


def cmd_models(args: argparse.Namespace) -> int:
    import json

    from genlowdim.crystal.families import FAMILIES
    from genlowdim.crystal.pretrained import available_models

    models = available_models()
    if args.json:
        print(json.dumps(models, indent=1))
        return 0
    if not models:
        print("no models are shipped with this installation")
    for name, manifest in models.items():
        kind = next((k for k in manifest["files"] if k in FAMILIES), "cdvae")   # the model's family
        entry = manifest["files"].get(kind, {})
        print(f"{name}: {'CDVAE' if kind == 'cdvae' else kind} {entry.get('steps')} steps "
              f"({entry.get('config', {}).get('name')}), files {', '.join(sorted(manifest['files']))}; "
              f"use --model {name}")
        for key, figures in manifest.get("metrics", {}).items():
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in figures.items() if not isinstance(v, (dict, list)))
            print(f"  {key}: {shown}")
    return 0


def cmd_models_export(args: argparse.Namespace) -> int:
    from genlowdim.crystal.pretrained import PRETRAINED_DIR, export_model

    commands = {"cdvae": args.cdvae_command, "property": args.property_command}
    manifest = export_model(args.name, args.cdvae, args.property, commands=commands, git_commit=args.git_commit,
                            root=args.root or PRETRAINED_DIR)
    sizes = ", ".join(f"{kind} {entry['bytes'] / 1e6:.2f} MB" for kind, entry in manifest["files"].items())
    print(f"exported {args.name} to {args.root or PRETRAINED_DIR}/{args.name} ({sizes})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from genlowdim.crystal.tasks.demo import run_demo
    from genlowdim.runtime import resolve_device

    require_positive(args, "steps", "num")
    run_demo(args.out, steps=args.steps, num=args.num, device=resolve_device(args.device))
    return 0


def property_fn(checkpoint: dict):
    """``genlowdim evaluate --property-model``: the evaluation's ``property_fn`` of a property-predictor
    checkpoint payload (CheckpointError when it holds another kind of model)."""
    from genlowdim.crystal.cdvae.checkpoints import property_fn_from_checkpoint

    return property_fn_from_checkpoint(checkpoint)
