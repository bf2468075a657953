"""Handlers of the crystal commands (the flags are :mod:`genlowdim.crystal.cli`): each resolves the user's
choices once, loads the model and calls a task of :mod:`genlowdim.crystal.tasks`. Heavy imports happen inside
the handlers so that ``genlowdim --help`` stays fast."""
from __future__ import annotations

import argparse

from genlowdim.errors import CheckpointError, UsageError, require_positive


def protocol_config(cfg, args: argparse.Namespace):
    """(config, :class:`~genlowdim.crystal.cdvae.protocols.DecodeSettings`) for this command's protocol and
    overriding flags."""
    from genlowdim.crystal.cdvae.protocols import DEFAULT_PROTOCOL, resolve

    try:
        return resolve(args.protocol or DEFAULT_PROTOCOL, args.task, cfg, sampler=args.sampler,
                       steps=args.steps, step_lr=args.step_lr, type_update=getattr(args, "type_update", None),
                       latent=getattr(args, "latent", None), constraint=getattr(args, "constraint", None))
    except ValueError as err:
        raise UsageError(str(err)) from err


def resolve_checkpoint(args: argparse.Namespace, kind: str = "cdvae") -> str:
    """The checkpoint file behind ``--checkpoint`` or ``--model`` (also stored back in ``args.checkpoint``)."""
    from genlowdim.crystal.pretrained import checkpoint_path

    args.checkpoint = str(checkpoint_path(args.checkpoint, args.model, kind))
    return args.checkpoint


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

    cdvae_only = [flag for flag, value in (("--protocol", args.protocol), ("--sampler", args.sampler),
                                           ("--steps", args.steps), ("--target", args.target)) if value is not None]
    if cdvae_only:
        raise UsageError(f"{' and '.join(cdvae_only)} apply to CDVAE checkpoints; {args.checkpoint} holds another "
                         f"kind of crystal model")
    crystals = crystal_model(checkpoint, args, args.checkpoint)
    manifest = write_samples(crystals, args.num, args.out, batch_size=args.batch_size, seed=args.seed,
                             overwrite=args.overwrite, manifest={"checkpoint": args.checkpoint})
    print(f"wrote {manifest['count']} crystals to {args.out}")
    return 0


def _cdvae_checkpoint(path: str):
    """(payload, config) of a CDVAE checkpoint, read before any model or data is built."""
    from genlowdim.crystal.cdvae.config import config_from_dict
    from genlowdim.crystal.cdvae.training import FAMILY
    from genlowdim.runtime import load_checkpoint

    payload = load_checkpoint(path, family=FAMILY)
    cfg = config_from_dict(payload["config"])
    if cfg.task != "cdvae":
        raise CheckpointError(f"{path}: checkpoint holds a {cfg.task!r} model, this command needs a 'cdvae' "
                              f"model (trained with task: cdvae)")
    return payload, cfg


def _check_split(split: str, cfg) -> None:
    from genlowdim.structures.datasets import SPLITS

    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: not a split of the checkpoint's dataset {cfg.data.dataset!r}; "
                         f"use {', '.join(SPLITS[:-1])} or {SPLITS[-1]}")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.tasks.generate import reconstruct
    from genlowdim.runtime import resolve_device

    require_positive(args, "num", "batch_size", "steps")
    payload, cfg = _cdvae_checkpoint(resolve_checkpoint(args))
    _check_split(args.split, cfg)
    model, cfg = load_model(payload, resolve_device(args.device), use_ema=args.weights == "ema", task="cdvae")
    cfg, record = protocol_config(cfg, args)
    summary = reconstruct(model, cfg, args.split, args.out, num=args.num, batch_size=args.batch_size,
                          seed=args.seed, overwrite=args.overwrite, protocol=record)
    print(f"wrote {summary['count']} predictions and truths to {args.out}; evaluate with\n  genlowdim evaluate "
          f"{args.out}/predictions.extxyz --reference {args.out}/truth.extxyz --mode reconstruction "
          f"--out {args.out}/eval")
    return 0


def _check_optimizable(path: str, cfg, property_name: str | None) -> None:
    """What ``optimize`` needs of a checkpoint: a property head, known SR percentiles, the right property."""
    from genlowdim.crystal.tasks.optimize import check_property_name, sr_thresholds

    if not cfg.model.predict_property:
        raise UsageError(f"{path}: this CDVAE has no property head (model.predict_property: false); optimize "
                         f"needs one: train with --set model.predict_property=true")
    try:
        sr_thresholds(cfg.data.dataset)
    except ValueError as err:
        raise UsageError(f"{path}: {err}") from err
    try:
        check_property_name(cfg, property_name)
    except ValueError as err:
        raise UsageError(f"{err}; leave --property out or give that name") from err


def cmd_optimize(args: argparse.Namespace) -> int:
    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.tasks.optimize import optimize_property
    from genlowdim.runtime import resolve_device

    require_positive(args, "num", "opt_steps", "decode_every", "steps")
    if args.lr <= 0:
        raise UsageError(f"--lr {args.lr}: must be positive")
    payload, cfg = _cdvae_checkpoint(resolve_checkpoint(args))
    _check_optimizable(args.checkpoint, cfg, args.property)
    _check_split(args.split, cfg)
    property_path = args.property_model
    if property_path is None and args.model is not None:
        property_path = str(resolve_checkpoint(argparse.Namespace(checkpoint=None, model=args.model), "property"))
    device = resolve_device(args.device)
    model, cfg = load_model(payload, device, use_ema=args.weights == "ema", task="cdvae")
    cfg, record = protocol_config(cfg, args)
    prop_model = load_model(property_path, device, task="property")[0] if property_path else None
    result = optimize_property(model, cfg, args.out, property_name=args.property, split=args.split,
                               num=args.num, steps=args.opt_steps, decode_every=args.decode_every, lr=args.lr,
                               seed=args.seed, property_model=prop_model, protocol=record)
    print({k: result[k] for k in ("SR5", "SR10", "SR15")}, f"({record.protocol} protocol)")
    return 0


def _csp_settings(args: argparse.Namespace):
    from genlowdim.crystal.cdvae.csp import METHODS, CSPSettings

    require_positive(args, "num", "samples", "draws", "batch_size", "pool_size", "steps")
    if args.opt_steps is not None and args.opt_steps < 0:
        raise UsageError(f"--opt-steps {args.opt_steps}: must be at least 0")
    if args.method is not None and args.method not in METHODS:
        raise UsageError(f"--method {args.method!r}: choose one of {', '.join(METHODS)}")
    if args.formula is not None and args.num is not None:
        raise UsageError("--num counts compositions of a --split; with --formula use --samples")
    given = {k: v for k, v in (("method", args.method), ("draws", args.draws), ("opt_steps", args.opt_steps))
             if v is not None}
    return CSPSettings(**given)


def _check_formula(args: argparse.Namespace, payload: dict, cfg, types) -> str | None:
    """UsageError naming the formula's elements the model never saw in training; with
    ``--allow-unseen-elements`` the warning (printed here, written into the manifest by the task)."""
    import sys

    from genlowdim.crystal.known_elements import check_known_elements, training_elements

    known = training_elements(payload, cfg, args.checkpoint)
    warning = check_known_elements(types.tolist(), known, f"--formula {args.formula!r}",
                                   allow=args.allow_unseen_elements)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return warning


def cmd_csp(args: argparse.Namespace) -> int:
    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.tasks.csp import csp_formula, csp_split, parse_formula
    from genlowdim.runtime import resolve_device

    settings = _csp_settings(args)
    if args.fmax <= 0 or args.relax_steps < 0 or args.symprec <= 0:
        raise UsageError(f"--fmax and --symprec must be > 0 and --relax-steps ≥ 0 (got {args.fmax}, "
                         f"{args.symprec}, {args.relax_steps})")
    payload, cfg = _cdvae_checkpoint(resolve_checkpoint(args))
    warning = None
    if args.split is not None:
        _check_split(args.split, cfg)
    else:   # fail before building the model
        warning = _check_formula(args, payload, cfg, parse_formula(args.formula,
                                                                   int(payload["extra_state"]["max_atoms"])))
    model, cfg = load_model(payload, resolve_device(args.device), use_ema=args.weights == "ema", task="cdvae")
    cfg, record = protocol_config(cfg, args)
    kw = dict(settings=settings, pool_size=args.pool_size, batch_size=args.batch_size, seed=args.seed,
              overwrite=args.overwrite, protocol=record)
    if args.formula is not None:
        summary = csp_formula(model, cfg, args.formula, args.out, samples=args.samples or 20, warning=warning, **kw)
        print(f"wrote {summary['count']} candidates for {args.formula} to {args.out} (cif/, cif_symmetrized/, "
              f"candidates.extxyz; ranked best first by the heads' formula likelihood, method {settings.method})")
        _print_cells(args.out, args.symprec, cfg)
    else:
        summary = csp_split(model, cfg, args.split, args.out, num=args.num, samples=args.samples or 1, **kw)
        print(f"wrote {summary['count']} predictions for {summary['compositions']} compositions and their truths "
              f"to {args.out}")
    if args.relax:
        _relax_csp(args)
    if args.split is not None:
        predictions = "relaxed/predictions.extxyz" if args.relax else "predictions.extxyz"
        print(f"evaluate with\n  genlowdim evaluate {args.out}/{predictions} --reference {args.out}/truth.extxyz "
              f"--mode reconstruction --out {args.out}/eval")
    return 0


def _print_cells(out: str, symprec: float, cfg) -> None:
    from genlowdim.crystal.tasks.csp_report import candidate_report, training_records

    print("\n".join(candidate_report(out, training_records(cfg), symprec=symprec)))


def _relax_csp(args: argparse.Namespace) -> None:
    from genlowdim.crystal.tasks.csp_relax import relax_candidates, relaxed_lines
    from genlowdim.physics.relax import RelaxSettings

    merged = "candidates.extxyz" if args.formula is not None else "predictions.extxyz"
    record = relax_candidates(args.out, merged, ranked_ids=args.formula is not None, symprec=args.symprec,
                              settings=RelaxSettings(fmax=args.fmax, steps=args.relax_steps))
    print("\n".join(relaxed_lines(record, args.out, per_candidate=args.formula is not None)))


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


SMALL_CELL_ATOMS = 6     # perov_5-sized cells: tiny graphs and matrices


def analysis_threads(max_atoms: int, available: int) -> int:
    """Intra-op threads for ``analyse``: one for models of small cells (their graphs and Jacobians are
    too small to share out; one thread is fastest on a busy CPU), all ``available`` for larger cells."""
    return 1 if max_atoms <= SMALL_CELL_ATOMS else available


def cmd_analyse(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace
    from pathlib import Path

    import torch

    from genlowdim.crystal.analysis.run import AnalysisSettings, quick_settings, run_analysis
    from genlowdim.crystal.cdvae.checkpoints import load_model

    require_positive(args, "limit")
    payload, _ = _cdvae_checkpoint(resolve_checkpoint(args))
    digits = None
    if args.digits:
        if not Path(args.digits).is_file():
            raise UsageError(f"--digits {args.digits}: no such file (write it with `genlowdim lowrank digits`)")
        digits = json.loads(Path(args.digits).read_text()).get("jacobian_rank")
    model, cfg = load_model(payload, args.device, use_ema=args.weights == "ema", task="cdvae")
    settings = quick_settings() if args.quick else AnalysisSettings()
    if args.limit is not None:
        settings = replace(settings, limit_per_split=args.limit)
    threads = torch.get_num_threads()
    torch.set_num_threads(analysis_threads(model.max_atoms, threads))
    try:
        run_analysis(model, cfg, args.out, settings, checkpoint=args.checkpoint, digits=digits)
    finally:
        torch.set_num_threads(threads)
    print(f"wrote {args.out}/analysis.json and its figures")
    return 0


def cmd_analyse_memorisation(args: argparse.Namespace) -> int:
    from genlowdim.crystal.analysis.memorisation import run_memorisation

    require_positive(args, "steps", "num", "sampler_steps")
    try:
        sizes = sorted({int(v) for v in args.sizes.split(",") if v.strip()})
    except ValueError as err:
        raise UsageError(f"--sizes {args.sizes!r}: give comma-separated integers, e.g. 32,64,128") from err
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--sizes {args.sizes!r}: give positive training-set sizes")
    run_memorisation(args.config, sizes, args.steps, args.out, num=args.num, sampler_steps=args.sampler_steps,
                     intrinsic_dim=args.intrinsic_dim, seed=args.seed, device=args.device)
    return 0


def property_fn(checkpoint: dict):
    """``genlowdim evaluate --property-model``: the evaluation's ``property_fn`` of a property-predictor
    checkpoint payload (CheckpointError when it holds another kind of model)."""
    from genlowdim.crystal.cdvae.checkpoints import property_fn_from_checkpoint

    return property_fn_from_checkpoint(checkpoint)
