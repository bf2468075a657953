"""``genlowdim evaluate``: CDVAE's generation / reconstruction metrics on any model's output.

    genlowdim evaluate SAMPLES --reference perov_5:test --out DIR [--train perov_5:train]
                       [--property-model runs/property/best.pt]
    genlowdim evaluate PREDICTIONS --reference TRUTH --mode reconstruction --out DIR

SAMPLES/PREDICTIONS/TRUTH: a CIF folder, (multi-block) CIF, extxyz, CDVAE CSV or genlowdim JSON (``.gz``
fine), or a genlowdim sample directory (its ``samples.extxyz`` is read). ``--reference``/``--train``
also take a dataset split ``name:split``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    p = subparsers.add_parser("evaluate", help="CDVAE metrics of generated or reconstructed crystals",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", metavar="SAMPLES", help="generated (or predicted) structures")
    p.add_argument("--reference", required=True, help="reference set: file/folder or dataset split name:split")
    p.add_argument("--out", required=True, help="output folder (metrics.json, structures.csv, PNGs)")
    p.add_argument("--mode", choices=("generation", "reconstruction"), default="generation")
    p.add_argument("--train", default=None, help="training structures for novelty (file or name:split)")
    p.add_argument("--dataset", default=None, help="dataset whose coverage thresholds to use "
                   "(default: the name in --reference name:split)")
    p.add_argument("--cutoffs", nargs=2, type=float, default=None, metavar=("S", "C"),
                   help="coverage thresholds: structure and composition fingerprint distances")
    p.add_argument("--property-model", default=None, metavar="CKPT",
                   help="property-predictor checkpoint (task: property), or a shipped model's name such as "
                   "perov_5, for wdist_prop (default: not computed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the property subsample (default 0)")
    p.add_argument("--num-property-samples", type=int, default=1000,
                   help="valid crystals drawn for the property statistics (default 1000)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all usable cores)")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets (for name:split)")
    p.add_argument("--no-unique", action="store_true",
                   help="skip uniqueness (null in metrics.json)")
    p.add_argument("--pair-by", choices=("auto", "order", "id"), default="auto",
                   help="reconstruction: pair predictions with truths by id or by order (auto: id "
                   "when every truth id has a prediction)")
    p.add_argument("--stol", type=float, default=0.5, help="StructureMatcher stol (default 0.5)")
    p.add_argument("--angle-tol", type=float, default=10.0, help="StructureMatcher angle_tol (degrees)")
    p.add_argument("--ltol", type=float, default=0.3, help="StructureMatcher ltol (default 0.3)")
    p.add_argument("--fingerprints", choices=("fast", "reference"), default="fast",
                   help="CrystalNN fingerprint implementation: fast (vectorised, equal to matminer within "
                   "1e-6) or reference (matminer on every site)")
    p.add_argument("--stability", nargs="?", const="", default=None, metavar="RELAX_DIR",
                   help="generation: relax with CHGNet and add the stability figures (RMSD to relaxed, energy "
                   "W1, stable among known polymorphs, S.U.N.-style) to metrics.json; RELAX_DIR reuses a "
                   "finished `genlowdim relax` folder of the same SAMPLES")
    p.set_defaults(func=run, start=lambda a: f"{a.mode} metrics of {a.samples} against {a.reference} into {a.out}")


def _stability_options(args: argparse.Namespace, ids: list[str], dataset: str | None) -> dict | None:
    """``evaluate_generation``'s ``stability`` argument for ``--stability [RELAX_DIR]`` (None without it)."""
    if args.stability is None:
        return None
    from genlowdim.errors import UsageError

    import dataclasses

    from genlowdim.physics.relax import RelaxSettings
    from genlowdim.physics.workers import resolve_workers

    workers = resolve_workers(args.workers)     # relaxation shares the cores like the other stages
    options = {"dataset": dataset or "perov_5", "data_dir": args.data_dir,
               "settings": RelaxSettings(workers=workers)}
    if args.stability:
        from genlowdim.physics.folder import read_records, results_from_records

        try:
            records = read_records(args.stability)
        except FileNotFoundError as err:
            raise UsageError(str(err)) from err
        if [r["id"] for r in sorted(records, key=lambda r: r["index"])] != list(ids):
            raise UsageError(f"{args.stability}: its structures are not those of {args.samples} (ids differ)")
        options.update(results=results_from_records(records),
                       settings=dataclasses.replace(_relax_settings(args.stability), workers=workers))
    return options


def _relax_settings(folder: str):
    """The ``RelaxSettings`` a relax folder was made with, so the reference entries relax alike."""
    import dataclasses
    import json

    from genlowdim.physics.relax import RelaxSettings

    recorded = json.loads((Path(folder) / "relax.json").read_text())["settings"]
    return RelaxSettings(**{f.name: recorded[f.name] for f in dataclasses.fields(RelaxSettings)
                            if f.name in recorded})


def _is_dataset_ref(spec: str) -> bool:
    return ":" in spec and not Path(spec).exists()


def load_input(spec: str, data_dir: str | None = None, skipped: list | None = None) -> tuple[list[str], list]:
    """(ids, structures) from a file, folder, sample directory or dataset split ``name:split``.

    Every file, row and frame is read: each one that cannot be used is named on stderr with its reason
    (and appended to ``skipped`` as ``{"where", "reason", "message"}``) and the others are used; a
    UsageError only when none can be."""
    from genlowdim.errors import UsageError

    if _is_dataset_ref(spec):
        from genlowdim.structures.datasets import load_structures

        try:  # Niggli-reduced, lattice rebuilt from its parameters: the crystals CDVAE evaluates against
            return load_structures(spec, data_dir=data_dir)
        except (KeyError, ValueError, FileNotFoundError) as err:
            raise UsageError(f"{spec}: {err}") from err
    path = Path(spec)
    if path.is_dir() and (path / "samples.extxyz").is_file():
        path = path / "samples.extxyz"
    elif path.is_dir() and (path / "cif").is_dir() and not any(path.glob("*.cif*")):
        path = path / "cif"  # a sample directory without its extxyz
    elif not path.exists():
        raise UsageError(f"{spec}: no such file or folder (nor a dataset split name:split)")
    from genlowdim.structures.io import StructureReadError, read_each_structure

    try:
        pairs, errors = read_each_structure(path)
    except StructureReadError as err:
        raise UsageError(str(err)) from err
    if not pairs:
        raise UsageError(f"{path}: holds no usable structures" + (f" ({len(errors)} unusable; first: "
                                                                  f"{errors[0]})" if errors else ""))
    for err in errors:
        print(f"genlowdim: skipped {err} [{err.reason}]", file=sys.stderr)
        if skipped is not None:
            skipped.append({"where": str(err).split(": ", 1)[0], "reason": err.reason, "message": str(err)})
    return [i for i, _ in pairs], [s for _, s in pairs]


def _record_skipped(out: str, skipped: list[dict]) -> None:
    """Add the inputs that could not be read to ``out/metrics.json``, beside the metrics they did not enter."""
    import json

    from genlowdim.runtime import write_json

    path = Path(out) / "metrics.json"
    if skipped and path.is_file():
        write_json(path, {**json.loads(path.read_text()), "skipped_inputs": skipped})


def pair_by_id(pred_ids, preds, truth_ids, truths, how: str = "auto") -> tuple[list, list[str]]:
    """Predictions reordered to follow the truths; a truth without prediction gets ``None`` (a miss). With
    ``how="auto"`` ids pair when every truth has its prediction, or when every prediction names a truth (a
    prediction file that lost unreadable frames, which ``load_input`` reports by name)."""
    from genlowdim.errors import UsageError

    lookup = dict(zip(pred_ids, preds))
    truth_set = set(truth_ids)
    use_id = how == "id" or (how == "auto" and (all(t in lookup for t in truth_ids)
                                                 or (len(lookup) > 0 and all(i in truth_set for i in lookup))))
    if use_id:
        if len(lookup) != len(pred_ids):
            raise UsageError("predictions contain repeated ids; pair by order (--pair-by order)")
        return [lookup.get(t) for t in truth_ids], list(truth_ids)
    if len(preds) != len(truths):
        raise UsageError(f"{len(preds)} predictions but {len(truths)} truths, and their ids differ: "
                         "pass matching ids or equally long files")
    return list(preds), list(truth_ids)


def group_by_id(pred_ids, preds, truth_ids) -> list[list] | None:
    """When some prediction id repeats (several candidates per truth, best first): the candidates of each
    truth, in the truths' order (UsageError if a truth has none). None when every id is unique."""
    from collections import defaultdict

    from genlowdim.errors import UsageError

    if len(set(pred_ids)) == len(pred_ids):
        return None
    groups = defaultdict(list)
    for i, s in zip(pred_ids, preds):
        groups[i].append(s)
    missing = [t for t in truth_ids if t not in groups]
    if missing:
        raise UsageError(f"predictions repeat ids (several candidates per truth) but {len(missing)} truths have "
                         f"none, e.g. {missing[0]!r}")
    return [groups[t] for t in truth_ids]


def _property_fn(args: argparse.Namespace):
    """The evaluation's ``property_fn`` for ``--property-model`` (None without one), built by the loader the
    top-level command line hands down (``args.load_property_fn``): the metrics know no model family."""
    if not args.property_model:
        return None
    load = getattr(args, "load_property_fn", None)
    if load is None:
        from genlowdim.errors import UsageError

        raise UsageError("--property-model needs the genlowdim command line (it loads the model's family)")
    return load(args.property_model)


def run(args: argparse.Namespace) -> int:
    from genlowdim.metrics.evaluate import (evaluate_generation, evaluate_reconstruction,
                                            evaluate_reconstruction_best_of, format_table)

    unread: list[dict] = []           # inputs of the evaluated set that could not be read
    ids, structures = load_input(args.samples, args.data_dir, unread)
    skipped = list(unread)
    ref_ids, reference = load_input(args.reference, args.data_dir, skipped)
    if args.mode == "reconstruction":
        if args.property_model or args.stability is not None:
            from genlowdim.errors import UsageError

            raise UsageError("--property-model and --stability apply to --mode generation (reconstruction has no property metric)")
        groups = group_by_id(ids, structures, ref_ids) if args.pair_by != "order" else None
        from genlowdim.metrics.matcher import MatchTolerances

        tolerances = dict(tolerances=MatchTolerances(stol=args.stol, angle_tol=args.angle_tol, ltol=args.ltol),
                          workers=args.workers, out_dir=args.out)
        if groups is not None:   # several candidates per truth (CSP with --samples k): best of k
            report = evaluate_reconstruction_best_of(groups, reference, ids=ref_ids, **tolerances)
        else:
            preds, ids = pair_by_id(ids, structures, ref_ids, reference, args.pair_by)
            report = evaluate_reconstruction(preds, reference, ids=ids, **tolerances)
    else:
        dataset = args.dataset or (args.reference.split(":")[0] if _is_dataset_ref(args.reference) else None)
        cut = args.cutoffs or (None, None)
        train = load_input(args.train, args.data_dir, skipped)[1] if args.train else None
        # like CDVAE, a generated crystal that cannot be built (here: read) counts as generated and invalid
        # (construction_failed), so validity is never taken over the readable ones only
        ids = list(ids) + [s["where"] for s in unread]
        structures = list(structures) + [None] * len(unread)
        property_fn = _property_fn(args)
        try:
            report = evaluate_generation(
                structures, reference, dataset=dataset, struct_cutoff=cut[0], comp_cutoff=cut[1],
                train_structures=train, property_fn=property_fn,
                num_property_samples=args.num_property_samples, seed=args.seed,
                workers=args.workers, out_dir=args.out, ids=ids, compute_unique=not args.no_unique,
                fingerprints=args.fingerprints, stability=_stability_options(args, ids, dataset),
                reference_cache_key=args.reference if _is_dataset_ref(args.reference) else None)
        except ValueError as err:
            from genlowdim.errors import UsageError

            raise UsageError(str(err)) from err
    _record_skipped(args.out, skipped)
    print(format_table(report))
    if skipped:
        counted = (f"; the {len(unread)} of the generated set count as generated and invalid (construction_failed)"
                   if unread and args.mode != "reconstruction" else "")
        print(f"{len(skipped)} input structures could not be read (named above and in metrics.json){counted}",
              file=sys.stderr)
    print(f"wrote {Path(args.out) / 'metrics.json'}", file=sys.stderr)
    return 0
