"""Handlers of ``reconstruct``, ``csp`` and ``optimize`` (their flags are :mod:`genlowdim.crystal.cli`).
Each takes the checkpoint's model through its family and the contract
(:func:`genlowdim.crystal.commands.load_crystals`), so any registered family runs ``reconstruct`` and ``csp``,
and any family with the latent hooks and a property head runs ``optimize``."""
from __future__ import annotations

import argparse

from genlowdim.crystal.commands import (STEP_FLAGS, check_split, load_crystals, require_latent,
                                        shipped_property_model)
from genlowdim.errors import UsageError, require_positive

__all__ = ["cmd_reconstruct", "cmd_csp", "cmd_optimize"]


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
    if args.fmax <= 0 or args.relax_steps < 0 or args.symprec <= 0 or args.relax_symprec <= 0:
        raise UsageError(f"--fmax, --symprec and --relax-symprec must be > 0 and --relax-steps ≥ 0 (got "
                         f"{args.fmax}, {args.symprec}, {args.relax_symprec}, {args.relax_steps})")


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
    from genlowdim.physics.workers import resolve_workers

    merged = "candidates.extxyz" if args.formula is not None else "predictions.extxyz"
    record = relax_candidates(args.out, merged, ranked_ids=args.formula is not None, symprec=args.symprec,
                              settings=RelaxSettings(fmax=args.fmax, steps=args.relax_steps,
                                                     symmetry=args.relax_symmetry, symprec=args.relax_symprec,
                                                     workers=resolve_workers(None)), ranking=args.rank)
    print("\n".join(relaxed_lines(record, args.out, per_candidate=args.formula is not None)))


def _check_optimizable(path: str, crystals, property_name: str | None) -> None:
    """What ``optimize`` needs of a model: the latent hooks, a property head, known SR percentiles of its
    dataset, the right property."""
    from genlowdim.crystal.tasks.optimize import check_property_name, sr_thresholds

    require_latent(crystals, path, "optimize")
    try:
        sr_thresholds(crystals.dataset)
    except ValueError as err:
        raise UsageError(f"{path}: {err}") from err
    try:
        check_property_name(crystals.dataset, property_name)
    except ValueError as err:
        raise UsageError(f"{err}; leave --property out or give that name") from err


def _property_model(args: argparse.Namespace):
    """The property predictor that scores the decodes: ``--property-model``, else a shipped model's own
    (when it ships one), else None (the model's head on the re-encoded decode)."""
    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.runtime import resolve_device

    path = args.property_model or shipped_property_model(args.model)
    return load_model(path, resolve_device(args.device), task="property")[0] if path else None


def cmd_optimize(args: argparse.Namespace) -> int:
    from genlowdim.crystal.tasks.optimize import optimize_property

    require_positive(args, "num", "opt_steps", "decode_every", *STEP_FLAGS)
    if args.lr <= 0:
        raise UsageError(f"--lr {args.lr}: must be positive")
    _, crystals = load_crystals(args)
    _check_optimizable(args.checkpoint, crystals, args.property)
    check_split(args.split, crystals.dataset)
    result = optimize_property(crystals, args.out, property_name=args.property, split=args.split, num=args.num,
                               steps=args.opt_steps, decode_every=args.decode_every, lr=args.lr, seed=args.seed,
                               property_model=_property_model(args))
    record = result.get("protocol")
    print({k: result[k] for k in ("SR5", "SR10", "SR15")},
          f"({record['protocol']} protocol)" if isinstance(record, dict) else f"(scored by {result['scored_by']})")
    return 0
