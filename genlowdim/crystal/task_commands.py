"""Handlers of ``reconstruct``, ``csp`` and ``optimize`` (their flags are :mod:`genlowdim.crystal.cli`).
``reconstruct`` and ``csp`` take the checkpoint's model through its family and the contract
(:func:`genlowdim.crystal.commands.load_crystals`), so any registered family runs them; ``optimize`` loads a
CDVAE (its property head and latent optimisation)."""
from __future__ import annotations

import argparse

from genlowdim.crystal.commands import (STEP_FLAGS, check_split, load_crystals, protocol_config,
                                        resolve_checkpoint)
from genlowdim.errors import CheckpointError, UsageError, require_positive

__all__ = ["cmd_reconstruct", "cmd_csp", "cmd_optimize", "cdvae_checkpoint"]


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from genlowdim.crystal.tasks.generate import reconstruct_split

    require_positive(args, "num", "batch_size", *STEP_FLAGS)
    _, crystals = load_crystals(args)
    check_split(args.split, crystals.dataset)
    summary = reconstruct_split(crystals, args.split, args.out, num=args.num, batch_size=args.batch_size,
                                seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {summary['count']} predictions and truths to {args.out}; evaluate with\n  genlowdim evaluate "
          f"{args.out}/predictions.extxyz --reference {args.out}/truth.extxyz --mode reconstruction "
          f"--out {args.out}/eval")
    return 0


def _check_csp_args(args: argparse.Namespace) -> None:
    require_positive(args, "num", "samples", "draws", "batch_size", "pool_size", *STEP_FLAGS)
    if args.formula is not None and args.num is not None:
        raise UsageError("--num counts compositions of a --split; with --formula use --samples")
    if args.fmax <= 0 or args.relax_steps < 0 or args.symprec <= 0:
        raise UsageError(f"--fmax and --symprec must be > 0 and --relax-steps ≥ 0 (got {args.fmax}, "
                         f"{args.symprec}, {args.relax_steps})")


def _check_formula(args: argparse.Namespace, payload: dict, crystals, types) -> str | None:
    """UsageError naming the formula's elements the model never saw in training; with
    ``--allow-unseen-elements`` the warning (printed here, written into the manifest by the task)."""
    import sys

    from genlowdim.crystal.known_elements import check_known_elements, training_elements

    known = training_elements(payload, getattr(crystals, "config", None), args.checkpoint, model=crystals)
    warning = check_known_elements(types.tolist(), known, f"--formula {args.formula!r}",
                                   allow=args.allow_unseen_elements)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return warning


def cmd_csp(args: argparse.Namespace) -> int:
    from genlowdim.crystal.tasks.csp import csp_formula, csp_split, parse_formula

    _check_csp_args(args)
    payload, crystals = load_crystals(args)
    kw = dict(batch_size=args.batch_size, seed=args.seed, overwrite=args.overwrite)
    if args.formula is not None:
        warning = _check_formula(args, payload, crystals, parse_formula(args.formula, crystals.max_atoms))
        summary = csp_formula(crystals, args.formula, args.out, samples=args.samples or 20, warning=warning, **kw)
        ranked = (f"the heads' formula likelihood, method {summary['method']}" if "method" in summary
                  else "the model's score")
        print(f"wrote {summary['count']} candidates for {args.formula} to {args.out} (cif/, cif_symmetrized/, "
              f"candidates.extxyz; ranked best first by {ranked})")
        _print_cells(args.out, args.symprec, crystals)
    else:
        check_split(args.split, crystals.dataset)
        summary = csp_split(crystals, args.split, args.out, num=args.num, samples=args.samples or 1, **kw)
        print(f"wrote {summary['count']} predictions for {summary['compositions']} compositions and their truths "
              f"to {args.out}")
    if args.relax:
        _relax_csp(args)
    if args.split is not None:
        predictions = "relaxed/predictions.extxyz" if args.relax else "predictions.extxyz"
        print(f"evaluate with\n  genlowdim evaluate {args.out}/{predictions} --reference {args.out}/truth.extxyz "
              f"--mode reconstruction --out {args.out}/eval")
    return 0


def _print_cells(out: str, symprec: float, crystals) -> None:
    """Each candidate's cell beside its nearest training entry (a family without a config: no entries)."""
    from genlowdim.crystal.tasks.csp_report import candidate_report, training_records

    cfg = getattr(crystals, "config", None)
    print("\n".join(candidate_report(out, training_records(cfg) if cfg is not None else [], symprec=symprec)))


def _relax_csp(args: argparse.Namespace) -> None:
    from genlowdim.crystal.tasks.csp_relax import relax_candidates, relaxed_lines
    from genlowdim.physics.relax import RelaxSettings

    merged = "candidates.extxyz" if args.formula is not None else "predictions.extxyz"
    record = relax_candidates(args.out, merged, ranked_ids=args.formula is not None, symprec=args.symprec,
                              settings=RelaxSettings(fmax=args.fmax, steps=args.relax_steps,
                                                     symmetry=args.relax_symmetry, symprec=args.symprec))
    print("\n".join(relaxed_lines(record, args.out, per_candidate=args.formula is not None)))


def cdvae_checkpoint(path: str):
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

    require_positive(args, "num", "opt_steps", "decode_every", *STEP_FLAGS)
    if args.lr <= 0:
        raise UsageError(f"--lr {args.lr}: must be positive")
    payload, cfg = cdvae_checkpoint(resolve_checkpoint(args))
    _check_optimizable(args.checkpoint, cfg, args.property)
    check_split(args.split, cfg.data.dataset)
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
