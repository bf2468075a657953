"""A CDVAE checkpoint and a command's arguments -> the model as the tasks see it
(:class:`~genlowdim.crystal.cdvae.contract.CDVAECrystals`): the weights (``--weights``) on ``--device``, the
protocol and its overriding flags resolved once (:func:`protocol_config`), and the task's own settings
(``--latent`` of reconstruction; CSP's latent source and pool). This is the family's line in
:data:`genlowdim.crystal.families.FAMILIES`."""
from __future__ import annotations

import argparse
import sys

from genlowdim.errors import UsageError, require_positive

__all__ = ["STEP_FLAGS", "protocol_config", "warn_deprecated_steps", "csp_settings", "sample_pool_size",
           "cdvae_crystals"]

STEP_FLAGS = ("levels", "steps_per_level", "steps")   # attributes of the sampling step flags


def warn_deprecated_steps(args: argparse.Namespace) -> None:
    """A line on stderr when the deprecated ``--steps`` was given (it keeps its meaning)."""
    if getattr(args, "steps", None) is not None:
        print("genlowdim: warning: --steps is deprecated; it stays --steps-per-level for ALD samplers and "
              "--levels for the others", file=sys.stderr)


def protocol_config(cfg, args: argparse.Namespace):
    """(config, :class:`~genlowdim.crystal.cdvae.protocols.DecodeSettings`) for this command's protocol and
    overriding flags."""
    from genlowdim.crystal.cdvae.protocols import DEFAULT_PROTOCOL, resolve

    require_positive(args, *STEP_FLAGS)
    warn_deprecated_steps(args)
    try:
        return resolve(args.protocol or DEFAULT_PROTOCOL, args.task, cfg, sampler=args.sampler,
                       steps=args.steps, levels=args.levels, steps_per_level=args.steps_per_level,
                       step_lr=args.step_lr, type_update=getattr(args, "type_update", None),
                       latent=getattr(args, "latent", None), constraint=getattr(args, "constraint", None),
                       source=getattr(args, "latent_source", None))
    except ValueError as err:
        raise UsageError(str(err)) from err


def csp_settings(args: argparse.Namespace):
    """:class:`~genlowdim.crystal.cdvae.csp.CSPSettings` of ``csp``'s ``--method``, ``--draws``, ``--opt-steps``."""
    from genlowdim.crystal.cdvae.csp import METHODS, CSPSettings

    if args.opt_steps is not None and args.opt_steps < 0:
        raise UsageError(f"--opt-steps {args.opt_steps}: must be at least 0")
    if args.method is not None and args.method not in METHODS:
        raise UsageError(f"--method {args.method!r}: choose one of {', '.join(METHODS)}")
    given = {k: v for k, v in (("method", args.method), ("draws", args.draws), ("opt_steps", args.opt_steps))
             if v is not None}
    return CSPSettings(**given)


def sample_pool_size(args: argparse.Namespace, default: int = 0) -> int:
    """``sample --pool-size`` (0: the whole training split), else ``default``; UsageError when negative."""
    size = getattr(args, "pool_size", None)
    if size is None:
        return default
    if size < 0:
        raise UsageError(f"--pool-size {size}: give a number of training crystals, or 0 for all of them")
    return size


def _check_property_head(cfg, args: argparse.Namespace) -> None:
    """UsageError, with the setting to train one, when ``optimize`` or ``--target`` meets a CDVAE without a
    property head."""
    if cfg.model.predict_property:
        return
    if getattr(args, "task", None) == "optimize":
        raise UsageError(f"{args.checkpoint}: this CDVAE has no property head (model.predict_property: false); "
                         f"optimize needs one: train with --set model.predict_property=true")
    if getattr(args, "target", None) is not None:
        raise UsageError(f"--target needs a CDVAE trained with a property head (model.predict_property: true); "
                         f"{args.checkpoint} has none")


def cdvae_crystals(payload: dict, args: argparse.Namespace):
    """The CDVAE of ``payload`` for the command of ``args``: decoding with its config's sampling settings, or,
    for a command with the protocol flags (``args.task``), with the resolved protocol."""
    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.cdvae.contract import CDVAECrystals
    from genlowdim.crystal.cdvae.csp import load_pool, training_pool
    from genlowdim.runtime import resolve_device

    task = getattr(args, "task", None)
    settings = csp_settings(args) if task == "csp" else None   # its errors come before the model is built
    model, cfg = load_model(payload, resolve_device(args.device), use_ema=args.weights == "ema", task="cdvae")
    _check_property_head(cfg, args)
    if task is None:
        return CDVAECrystals(model, cfg.sampling, config=cfg)
    cfg, decode = protocol_config(cfg, args)
    kw = {}
    if task == "reconstruct":
        kw = dict(latent=decode.latent)
    elif task == "csp":
        pool_size = args.pool_size
        kw = dict(csp=settings, pool_size=pool_size,
                  pool_loader=lambda: load_pool(model, cfg, settings, pool_size))
    elif task == "optimize":
        kw = dict(latent=decode.latent, constraint=decode.constraint)
    elif task == "sample" and decode.source == "posterior":
        pool_size = sample_pool_size(args)
        kw = dict(source="posterior", pool_size=pool_size,
                  pool_loader=lambda: training_pool(model, cfg, pool_size or None))
    return CDVAECrystals(model, cfg.sampling, config=cfg, protocol=decode, **kw)
