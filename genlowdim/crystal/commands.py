"""Handlers of the crystal commands (the flags are :mod:`genlowdim.crystal.cli`): each resolves the user's
choices once, loads the model and calls a task of :mod:`genlowdim.crystal.tasks`. Heavy imports happen inside
the handlers so that ``genlowdim --help`` stays fast."""
from __future__ import annotations

import argparse

from genlowdim.crystal.cdvae.from_args import STEP_FLAGS, protocol_config
from genlowdim.errors import CheckpointError, UsageError, require_positive

__all__ = ["STEP_FLAGS", "protocol_config", "resolve_checkpoint", "load_crystals", "check_split",
           "reject_cdvae_flags", "train", "sample", "property_fn", "target_margin", "cmd_models",
           "cmd_models_export", "cmd_demo"]


def resolve_checkpoint(args: argparse.Namespace, kind: str = "cdvae") -> str:
    """The checkpoint file behind ``--checkpoint`` or ``--model`` (also stored back in ``args.checkpoint``)."""
    from genlowdim.crystal.pretrained import checkpoint_path

    args.checkpoint = str(checkpoint_path(args.checkpoint, args.model, kind))
    return args.checkpoint


def load_crystals(args: argparse.Namespace):
    """(checkpoint payload, the model as the tasks see it) of ``--checkpoint``/``--model``: the checkpoint's
    model kind picks its family (:mod:`genlowdim.crystal.families`), which builds it from the command's
    arguments. A CDVAE-only flag given to another family is a UsageError."""
    from genlowdim.crystal.families import crystal_model, model_kind
    from genlowdim.runtime import load_checkpoint

    path = resolve_checkpoint(args)
    payload = load_checkpoint(path, family="crystal")
    if model_kind(payload) != "cdvae":
        reject_cdvae_flags(args, path)
    return payload, crystal_model(payload, args, path)


# flags that set how a CDVAE decodes (its protocol, CSP's latent source): (flag, attribute)
CDVAE_FLAGS = (("--protocol", "protocol"), ("--sampler", "sampler"), ("--steps", "steps"), ("--levels", "levels"),
               ("--steps-per-level", "steps_per_level"), ("--step-lr", "step_lr"), ("--type-update", "type_update"),
               ("--latent", "latent"), ("--constraint", "constraint"), ("--target", "target"),
               ("--method", "method"), ("--draws", "draws"), ("--opt-steps", "opt_steps"))


def reject_cdvae_flags(args: argparse.Namespace, path: str) -> None:
    """UsageError naming the CDVAE-only flags given for ``path``, a checkpoint of another crystal family."""
    given = [flag for flag, name in CDVAE_FLAGS if getattr(args, name, None) is not None]
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
TARGET_POOL_SIZE = 2000      # training crystals encoded for --target-source posterior


def target_margin(args: argparse.Namespace) -> float:
    """``--target-margin``, else the shipped model's default (its manifest's ``defaults.target_margin``: one
    val std of its property head's error), else 0."""
    if getattr(args, "target_margin", None) is not None:
        return float(args.target_margin)
    if getattr(args, "model", None):
        from genlowdim.crystal.pretrained import available_models

        return float(available_models().get(args.model, {}).get("defaults", {}).get("target_margin", 0.0))
    return 0.0


def _target(args: argparse.Namespace, cfg):
    """The parsed ``--target`` (None without one); UsageError when the model cannot aim at it."""
    if getattr(args, "target", None) is None:
        if any(getattr(args, k, None) is not None for k in ("target_source", "target_draws", "target_margin")):
            raise UsageError("--target-source, --target-draws and --target-margin apply with --target")
        return None
    from genlowdim.crystal.tasks.targeted import parse_target
    from genlowdim.structures.registry import DATASETS

    require_positive(args, "target_draws")
    spec = DATASETS.get(cfg.data.dataset)
    target = parse_target(args.target, spec.property if spec is not None else None)
    margin = target_margin(args)
    if margin < 0:
        raise UsageError(f"--target-margin must be >= 0, got {margin:g}")
    target.shrunk(margin)   # UsageError when nothing of the target is left
    if not cfg.model.predict_property:
        raise UsageError(f"--target needs a CDVAE trained with a property head (model.predict_property: true); "
                         f"{args.checkpoint} has none")
    return target


def sample(args: argparse.Namespace, checkpoint: dict) -> int:
    """``genlowdim sample`` for crystal checkpoints: CIFs + samples.extxyz + manifest.json in --out. A CDVAE
    takes its protocol and --target; another family's model is sampled through the contract."""
    from genlowdim.crystal.families import model_kind

    if model_kind(checkpoint) != "cdvae":
        return _sample_family(args, checkpoint)
    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.cdvae.config import config_from_dict
    from genlowdim.crystal.tasks.generate import sample_crystals
    from genlowdim.runtime import resolve_device

    target = _target(args, config_from_dict(checkpoint["config"]))
    model, cfg = load_model(checkpoint, resolve_device(args.device), use_ema=args.weights == "ema",
                            task="cdvae")
    cfg, record = protocol_config(cfg, args)
    pool = None
    if target is not None and (getattr(args, "target_source", None) or TARGET_SOURCE) == "posterior":
        from genlowdim.crystal.latents import encode_pool
        from genlowdim.crystal.cdvae.training import load_split

        pool = encode_pool(model, load_split(cfg, "train", TARGET_POOL_SIZE))
    manifest = sample_crystals(model, cfg, args.num, args.out, batch_size=args.batch_size, seed=args.seed,
                               checkpoint=args.checkpoint, overwrite=args.overwrite, protocol=record,
                               target=target, max_draws=getattr(args, "target_draws", None) or 1000,
                               target_pool=pool, target_margin=target_margin(args) if target is not None else 0.0)
    aimed = "" if target is None else "; " + _aim_report(args, target, manifest)
    print(f"wrote {manifest['count']} crystals to {args.out} ({record.protocol} protocol, sampler "
          f"{record.sampler}){aimed}")
    return 0


def _aim_report(args: argparse.Namespace, target, manifest: dict) -> str:
    """The account of ``sample --target``; a shipped model's property predictor also scores the crystals."""
    from genlowdim.crystal.tasks.targeted import check_with_predictor, describe_aim

    if args.model is not None and manifest.get("count"):
        predictor = resolve_checkpoint(argparse.Namespace(checkpoint=None, model=args.model), "property")
        manifest = check_with_predictor(args.out, target, predictor, manifest,
                                        name=f"{args.model}'s shipped property predictor")
    return describe_aim(manifest, target)


def _sample_family(args: argparse.Namespace, checkpoint: dict) -> int:
    """``genlowdim sample`` of any crystal model family (:mod:`genlowdim.crystal.families`)."""
    from genlowdim.crystal.families import crystal_model
    from genlowdim.crystal.tasks.generate import write_samples

    reject_cdvae_flags(args, args.checkpoint)
    crystals = crystal_model(checkpoint, args, args.checkpoint)
    manifest = write_samples(crystals, args.num, args.out, batch_size=args.batch_size, seed=args.seed,
                             overwrite=args.overwrite, manifest={"checkpoint": args.checkpoint})
    print(f"wrote {manifest['count']} crystals to {args.out}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import json

    from genlowdim.crystal.pretrained import available_models

    models = available_models()
    if args.json:
        print(json.dumps(models, indent=1))
        return 0
    if not models:
        print("no models are shipped with this installation")
    for name, manifest in models.items():
        cdvae = manifest["files"].get("cdvae", {})
        print(f"{name}: CDVAE {cdvae.get('steps')} steps ({cdvae.get('config', {}).get('name')}), "
              f"files {', '.join(sorted(manifest['files']))}; use --model {name}")
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
