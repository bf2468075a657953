"""Handlers of ``analyse`` and ``analyse-memorisation`` (their flags are :mod:`genlowdim.crystal.cli`): the
low-dimensional structure of a trained CDVAE, and memorisation against training-set size.

``analyse`` reads more of a model than the contract gives: the CDVAE's decoder as a denoiser at its own noise
levels, its lattice, composition and atom-count heads, and its sampler (docs/contributing.md), so it takes a
CDVAE checkpoint and refuses another family's with one line."""
from __future__ import annotations

import argparse

from genlowdim.crystal.commands import resolve_checkpoint
from genlowdim.errors import CheckpointError, UsageError, require_positive

__all__ = ["analysis_threads", "cdvae_checkpoint", "cmd_analyse", "cmd_analyse_memorisation"]


def cdvae_checkpoint(path: str):
    """(payload, config) of a CDVAE checkpoint, read before any model or data is built; CheckpointError
    (one line) for a checkpoint of another kind."""
    from genlowdim.crystal.cdvae.config import config_from_dict
    from genlowdim.crystal.cdvae.training import FAMILY
    from genlowdim.crystal.families import model_kind
    from genlowdim.runtime import load_checkpoint

    payload = load_checkpoint(path, family=FAMILY)
    kind = model_kind(payload)
    if kind != "cdvae":
        raise CheckpointError(f"{path}: checkpoint holds a {kind!r} model; analyse reads a CDVAE's decoder, heads "
                              f"and noise levels, beyond the crystal model contract, so it needs a 'cdvae' model")
    return payload, config_from_dict(payload["config"])


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
    payload, _ = cdvae_checkpoint(resolve_checkpoint(args))
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
