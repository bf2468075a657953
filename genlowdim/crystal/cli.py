"""The crystal layer's commands and flags.

``genlowdim train --config configs/crystal/X.yaml --out D`` and ``genlowdim sample --checkpoint C ...`` are
dispatched here by the top-level CLI (:func:`train`, :func:`sample`, :func:`property_fn`); this module adds
``data``, ``reconstruct``, ``optimize``, ``csp``, ``analyse``, ``analyse-memorisation``, ``models`` and ``demo``,
each with the flags it owns. The handlers are :mod:`genlowdim.crystal.commands` (train, sample, models, demo),
:mod:`~genlowdim.crystal.task_commands` (reconstruct, csp, optimize) and
:mod:`~genlowdim.crystal.analysis_commands` (analyse, analyse-memorisation).
"""
from __future__ import annotations

import argparse

from genlowdim.crystal import analysis_commands, commands, task_commands
from genlowdim.crystal.commands import property_fn, sample, train
from genlowdim.physics.ranking import RANKINGS

__all__ = ["register", "train", "sample", "property_fn", "add_model_flags", "add_overwrite_flag",
           "add_sampling_flags", "add_target_flags", "add_device_flag", "add_weights_flag"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this family's own command groups."""
    from genlowdim.crystal import data_cli

    data_cli.register(subparsers)
    p = subparsers.add_parser("reconstruct", help="encode and decode crystals of a split with a crystal model")
    add_model_flags(p)
    p.add_argument("--split", default="test", help="split of the checkpoint's dataset (train/val/test)")
    p.add_argument("--num", type=int, default=None, help="first N crystals of the split (default: all)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    add_weights_flag(p)
    add_sampling_flags(p, "reconstruct")
    p.add_argument("--out", required=True)
    add_overwrite_flag(p)
    add_device_flag(p)
    p.set_defaults(func=task_commands.cmd_reconstruct, start=lambda a: f"reconstructing {_first(a.num)} crystals of "
                   f"the {a.split} split with {_model(a)} into {a.out}")

    p = subparsers.add_parser("optimize", help="latent optimisation of a property (SR5/SR10/SR15) with a model that "
                              "has a latent space and a property head (a CDVAE)")
    add_model_flags(p, "checkpoint of a model with a latent space and a property head")
    p.add_argument("--property", default=None, help="property name (checked against the checkpoint's dataset)")
    p.add_argument("--property-model", default=None,
                   help="property-predictor checkpoint that scores the decodes (default with --model: the "
                   "shipped model's predictor; otherwise the model's own head on the re-encoded decode)")
    p.add_argument("--split", default="test", help="split whose first --num crystals are the starting points")
    p.add_argument("--num", type=int, default=100)
    p.add_argument("--opt-steps", type=int, default=5000, help="Adam steps on z (CDVAE: 5,000)")
    p.add_argument("--decode-every", type=int, default=555)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    add_weights_flag(p)
    add_sampling_flags(p, "optimize")
    p.add_argument("--out", required=True)
    add_device_flag(p)
    p.set_defaults(func=task_commands.cmd_optimize, start=lambda a: f"optimising the property of {_model(a)} from "
                   f"the first {a.num:,} {a.split} crystals ({a.opt_steps:,} Adam steps each) into {a.out}")

    p = subparsers.add_parser("csp", help="crystal structure prediction: candidate structures for a formula, "
                              "or the benchmark over a split's compositions")
    add_model_flags(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--formula", help="the cell's formula, e.g. SrTiO3 (as written: the atoms of one cell)")
    what.add_argument("--split", help="benchmark: predict the structures of a split's compositions (val/test)")
    p.add_argument("--num", type=int, default=None, help="with --split: the first N compositions (default: all)")
    p.add_argument("--samples", type=int, default=None,
                   help="candidates per composition (default: 20 for --formula, 1 for --split)")
    p.add_argument("--method", default=None,
                   help="latent source: random, prior, prior_opt (default), posterior, posterior_opt (docs/csp.md)")
    p.add_argument("--draws", type=int, default=None, help="latents scored by the heads per composition")
    p.add_argument("--opt-steps", type=int, default=None, help="Adam steps on each kept latent (*_opt methods)")
    p.add_argument("--pool-size", type=int, default=2000,
                   help="training crystals encoded for the posterior* methods and the *_opt radius")
    p.add_argument("--batch-size", type=int, default=500, help="candidates decoded together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-unseen-elements", action="store_true",
                   help="predict a --formula with elements the model never saw in training (refused by default; "
                   "the manifest then carries a warning)")
    add_weights_flag(p)
    add_sampling_flags(p, "csp")
    p.add_argument("--relax", action="store_true",
                   help="relax every candidate with CHGNet and rank each formula's candidates by relaxed energy "
                   "per atom (ties within 0.005 eV/atom keep the formula-NLL order): OUT/relaxed/")
    p.add_argument("--fmax", type=float, default=0.05, help="with --relax: force threshold, eV/Å (default 0.05)")
    p.add_argument("--relax-steps", type=int, default=500, help="with --relax: at most this many FIRE steps")
    p.add_argument("--relax-symmetry", action=argparse.BooleanOptionalAction, default=True,
                   help="with --relax: keep each candidate's space group (found at --relax-symprec) with ASE's "
                   "FixSymmetry; --no-relax-symmetry relaxes cell and positions freely (default: kept, chosen on "
                   "val, docs/physics.md)")
    p.add_argument("--relax-symprec", type=float, default=0.5,
                   help="with --relax: tolerance (Å) of the space group FixSymmetry keeps; the start is refined to "
                   "it (default 0.5, chosen on val)")
    p.add_argument("--rank", choices=RANKINGS, default="arrangement",
                   help="with --relax: 'arrangement' (default, chosen on val): the lowest-energy candidate among "
                   "the highest-symmetry ones names an arrangement, whose lowest-energy candidate ranks first; "
                   "'energy': relaxed energy per atom alone (docs/physics.md)")
    p.add_argument("--symprec", type=float, default=0.1,
                   help="symmetry tolerance (Å) of the printed space groups, symmetrised CIFs and the point "
                   "groups of --rank arrangement (default 0.1)")
    p.add_argument("--out", required=True)
    add_overwrite_flag(p)
    add_device_flag(p)
    p.set_defaults(func=task_commands.cmd_csp, start=_csp_start)

    p = subparsers.add_parser("analyse", help="low-dimensional structure of a CDVAE: latent union of subspaces, "
                              "denoiser Jacobian ranks, editing along subspace directions (analysis.json + PNGs)")
    add_model_flags(p)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true", help="minutes-scale settings (few crystals, σ levels, steps)")
    p.add_argument("--limit", type=int, default=None, help="first N crystals of each split (default: all)")
    p.add_argument("--digits", default=None,
                   help="digits.json of `genlowdim lowrank digits` to draw its Jacobian-rank profile alongside")
    add_weights_flag(p)
    add_device_flag(p, "cpu")
    p.set_defaults(func=analysis_commands.cmd_analyse, start=lambda a: f"analysing {_model(a)} into {a.out}"
                   + (" (quick settings)" if a.quick else ""))

    p = subparsers.add_parser("analyse-memorisation", help="train a crystal config on N training crystals for "
                              "each N (equal steps) and measure copies of training crystals vs valid novel ones")
    p.add_argument("--config", required=True)
    p.add_argument("--sizes", default="32,64,128,256", help="comma-separated training-set sizes N")
    p.add_argument("--steps", type=int, required=True, help="optimiser steps of every run")
    p.add_argument("--num", type=int, default=100, help="crystals generated per run")
    p.add_argument("--sampler-steps", type=int, default=None, help="steps per noise level of the sampler")
    p.add_argument("--intrinsic-dim", type=float, default=None,
                   help="an intrinsic dimension to state N/d against (e.g. from analysis.json)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    add_device_flag(p, "cpu")
    p.set_defaults(func=analysis_commands.cmd_analyse_memorisation, start=lambda a: f"training {a.config} on "
                   f"{a.sizes} crystals, {a.steps:,} steps each, into {a.out}")

    p = subparsers.add_parser("models", help="list the models shipped with the package and their measured figures")
    p.add_argument("--json", action="store_true", help="print the manifests as JSON")
    p.set_defaults(func=commands.cmd_models)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    e = actions.add_parser("export", help="(maintainers) write a shipped model from training runs' checkpoints")
    e.add_argument("--name", required=True, help="the model's name, e.g. perov_5")
    e.add_argument("--cdvae", required=True, help="the CDVAE run's checkpoint (its EMA weights are kept)")
    e.add_argument("--property", default=None, help="the property predictor run's checkpoint")
    e.add_argument("--cdvae-command", default=None, help="the command that trained the CDVAE (recorded)")
    e.add_argument("--property-command", default=None, help="the command that trained the predictor (recorded)")
    e.add_argument("--git-commit", default=None, help="the commit the runs were trained at (default: HEAD)")
    e.add_argument("--root", default=None, help="folder of shipped models (default: the package's)")
    e.set_defaults(func=commands.cmd_models_export, start=lambda a: f"exporting model {a.name} from {a.cdvae}")

    p = subparsers.add_parser("demo", help="sample the shipped model, then train a small CDVAE, sample, evaluate")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=None,
                   help="training budget in optimiser steps (default: the demo config's train.max_steps)")
    p.add_argument("--num", type=int, default=200, help="crystals to generate")
    add_device_flag(p)
    p.set_defaults(func=commands.cmd_demo, start=lambda a: f"{a.num:,} crystals from the shipped perov_5 model, "
                   f"then a short training run and {a.num:,} from it, all judged against perov_5's test split, "
                   f"into {a.out}")


def _model(args: argparse.Namespace) -> str:
    return args.model or args.checkpoint


def _first(num: int | None) -> str:
    return "all" if num is None else f"the first {num:,}"


def _csp_start(args: argparse.Namespace) -> str:
    if args.formula is not None:
        return (f"{args.samples or 20:,} candidate structures for {args.formula} from {_model(args)} "
                f"into {args.out}")
    return (f"structure prediction for {_first(args.num)} compositions of the {args.split} split with "
            f"{_model(args)} into {args.out}")


def add_device_flag(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--device``: where the model runs."""
    p.add_argument("--device", default=default, help=f"cpu, cuda, cuda:1 or auto (default: {default})")


def add_weights_flag(p: argparse.ArgumentParser) -> None:
    """``--weights``: which weights of a checkpoint are used."""
    p.add_argument("--weights", choices=["ema", "raw"], default="ema",
                   help="EMA weights when the run kept them (default) or the optimiser's raw weights")


def add_overwrite_flag(p: argparse.ArgumentParser) -> None:
    """``--overwrite``: discard another run's batches in ``--out`` instead of stopping."""
    p.add_argument("--overwrite", action="store_true",
                   help="discard results of other settings already in --out (default: resume only results "
                   "of the same settings, stop otherwise)")


def add_model_flags(p: argparse.ArgumentParser, help_text: str = "trained checkpoint") -> None:
    """``--checkpoint PATH`` or ``--model NAME`` (a model shipped with the package), exactly one."""
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", help=help_text)
    group.add_argument("--model", help="a model shipped with the package, e.g. perov_5 (`genlowdim models`)")


def add_sampling_flags(p: argparse.ArgumentParser, task: str = "sample") -> None:
    """The protocol and the settings that override it for one command (see genlowdim.crystal.cdvae.protocols)."""
    from genlowdim.crystal.cdvae.protocols import CONSTRAINTS, LATENTS, PROTOCOLS, SOURCES

    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None,
                   help="settings as CDVAE's evaluate.py ('cdvae') or this package's defaults ('genlowdim', "
                   "the default); the flags below override single settings")
    p.add_argument("--sampler", default=None, help="sampler name (default: the protocol's)")
    p.add_argument("--steps-per-level", type=int, default=None,
                   help="ALD samplers (ald, ald_fast): Langevin steps at each of the model's noise levels "
                   "(default: the protocol's)")
    p.add_argument("--levels", type=int, default=None,
                   help="the other samplers (pc, em, heun, euler, ddim; a low-rank model's): number of noise "
                   "levels, one step each (default: the protocol's)")
    p.add_argument("--steps", type=int, default=None,
                   help="deprecated: --steps-per-level for ALD samplers, --levels otherwise")
    p.add_argument("--step-lr", type=float, default=None, help="ALD step_lr (default: the protocol's)")
    if task != "csp":   # CSP keeps the formula's types (the decoder places them)
        p.add_argument("--type-update", choices=["argmax", "composition", "fixed"], default=None,
                       help="how types follow the decoder (default: the protocol's)")
    if task == "sample":
        p.add_argument("--latent-source", choices=SOURCES, default=None,
                       help="crystals: draw z from N(0, I) ('prior'; CDVAE) or around the encoded training "
                       "crystals ('posterior', z = μ_i + σ_i·ε with i uniform; docs/cdvae.md); default: the "
                       "protocol's")
        p.add_argument("--pool-size", type=int, default=None,
                       help="with --latent-source posterior: the first N training crystals encoded (default 0, "
                       "the whole training split; 2,000 with --target)")
    if task == "reconstruct":
        p.add_argument("--latent", choices=LATENTS, default=None,
                       help="decode z = μ ('mean') or a posterior sample ('sample'; CDVAE)")
    if task == "optimize":
        p.add_argument("--constraint", choices=CONSTRAINTS, default=None,
                       help="'none': Adam on z unbounded (CDVAE); 'ball': z kept within the radius of the "
                       "encoded training crystals (genlowdim)")
    p.set_defaults(task=task)


def add_target_flags(p: argparse.ArgumentParser) -> None:
    """``sample --target`` and its settings (generation aimed at a property,
    :mod:`genlowdim.crystal.tasks.targeted`)."""
    p.add_argument("--target", default=None,
                   help="crystals only: aim at a property, e.g. 'heat_ref<0.5', 'heat_ref>1.2', '0.2<heat_ref<0.5' "
                   "(heat_ref in eV/atom; rejection on the model's property head over z ~ N(0, I); with --model the "
                   "shipped property predictor also scores each crystal into predicted_property.csv; docs/csp.md)")
    p.add_argument("--target-draws", type=int, default=None,
                   help="with --target: at most this many latents drawn per crystal (default 1000)")
    p.add_argument("--target-margin", type=float, default=None,
                   help="with --target: the property head screens the target moved this far inwards, in the "
                   "property's units (default: a shipped model's own, one val std of its head's error, 0.099 "
                   "for perov_5; 0 for --checkpoint; docs/csp.md)")
    p.add_argument("--target-source", choices=["prior", "posterior"], default=None,
                   help="with --target: screen z ~ N(0, I) ('prior', the default) or draws around encoded training "
                   "crystals ('posterior'; docs/csp.md compares them)")
