"""The settings of the ``genlowdim`` protocol, chosen on perov_5's **val** split (test is never read here).

Three tables, each with CDVAE's own setting in the same run as the baseline row:
  1. generation: the fast sampler's step (r = step_lr/σ_min²) and steps per level; COV against the first
     ``--num-reference`` val crystals, validity, decoder calls (CDVAE: ALD 50 x 100, step_lr 1e-4, r = 1);
  2. reconstruction of the first ``--num-recon`` val crystals: latent (μ or a posterior sample) x type update
     (argmax as CDVAE, composition-constrained, fixed) with the fast sampler, and CDVAE's full ALD row;
  3. property optimisation from the first ``--num-opt`` val crystals: unbounded Adam (CDVAE) against the ball
     constraint at a few radius quantiles; SR5/10/15 scored by the property predictor.
Every row is written to ``--out``/rows.jsonl as soon as it is measured (a rerun skips finished rows).

    .venv/bin/python bench/tune_on_val.py --model perov_5 --out runs/tune_val
    .venv/bin/python bench/tune_on_val.py --checkpoint RUN/last.pt --property-model PROP/best.pt --parts gen
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch_geometric.data import Batch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genlowdim.crystal.cdvae.checkpoints import load_model  # noqa: E402
from genlowdim.crystal.cdvae.config import SamplerSpec  # noqa: E402
from genlowdim.crystal.cdvae.contract import CDVAECrystals  # noqa: E402
from genlowdim.crystal.tasks.optimize import optimize_property  # noqa: E402
from genlowdim.crystal.pretrained import checkpoint_path  # noqa: E402
from genlowdim.crystal.cdvae.protocols import resolve  # noqa: E402
from genlowdim.crystal.cdvae.sampling import generate, reconstruct_batch  # noqa: E402
from genlowdim.crystal.decoded import batch_to_decoded  # noqa: E402
from genlowdim.crystal.cdvae.training import load_split  # noqa: E402
from genlowdim.metrics.evaluate import evaluate_generation, evaluate_reconstruction  # noqa: E402

SIGMA_MIN = 0.01   # Å, the smallest noise level of the CDVAE configs: r = step_lr / σ_min²


def _value(report: dict, key: str):
    v = report["metrics"].get(key)
    return v.get("value") if isinstance(v, dict) else v


class Rows:
    """Rows kept in ``out/rows.jsonl``; a finished row (same table and name) is not measured again."""

    def __init__(self, out: Path):
        self.path = out / "rows.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        self.done = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                row = json.loads(line)
                self.done[(row["table"], row["name"])] = row

    def get(self, table: str, name: str):
        return self.done.get((table, name))

    def add(self, row: dict) -> dict:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        self.done[(row["table"], row["name"])] = row
        return row


def _batched(fn, total: int, batch_size: int, seed: int):
    """Concatenated structures of fn(k, n, generator) over batches; decoder calls summed."""
    structures, calls = [], 0
    for k in range(-(-total // batch_size)):
        n = min(batch_size, total - k * batch_size)
        decoded = fn(k, n, torch.Generator().manual_seed(seed * 1_000_003 + k))
        structures += decoded.to_structures()
        calls += decoded.decoder_calls
    return structures, calls


def generation_table(model, cfg, rows: Rows, args, reference) -> list[dict]:
    settings = [("cdvae ALD 50x100, r = 1", "ald", SamplerSpec("ald", 100, 1e-4))]
    settings += [(f"ald_fast 50x{args.steps_each}, r = {r:g}", "ald_fast",
                  SamplerSpec("ald", args.steps_each, r * SIGMA_MIN ** 2)) for r in args.rates]
    out = []
    for name, sampler, spec in settings:
        if name.startswith("cdvae") and args.skip_cdvae_ald:
            continue
        row = rows.get("generation", name)
        if row is None:
            used, _ = resolve("genlowdim", "sample", cfg, sampler=sampler)
            used = replace(used, sampling=used.sampling.with_spec(sampler, **vars(spec)))
            t0 = time.perf_counter()
            structures, calls = _batched(lambda k, n, g: generate(model, n, used.sampling, generator=g),
                                         args.num_gen, args.batch_size, args.seed)
            seconds = time.perf_counter() - t0
            report = evaluate_generation(structures, reference, dataset="perov_5", seed=args.seed,
                                         compute_unique=False, show_progress=False, num_wdist_seeds=0)
            row = rows.add({"table": "generation", "name": name, "step_lr": spec.step_lr,
                            "steps_each": spec.steps_each,
                            "decoder_calls_per_batch": calls // -(-args.num_gen // args.batch_size),
                            "seconds": seconds, **{k: _value(report, k) for k in
                                                   ("struct_valid", "comp_valid", "cov_recall", "cov_precision")}})
        out.append(row)
    return out


def reconstruction_table(model, cfg, rows: Rows, args) -> list[dict]:
    items = load_split(cfg, "val", args.num_recon)
    truths = batch_to_decoded(Batch.from_data_list(items)).to_structures()
    variants = [("cdvae: ALD 50x100, z sampled, argmax", "cdvae", {})]
    for latent in ("mean", "sample"):
        for types in args.recon_types:
            variants.append((f"ald_fast, z {latent}, {types}", "genlowdim", {"latent": latent, "type_update": types}))
    out = []
    for name, protocol, flags in variants:
        if protocol == "cdvae" and args.skip_cdvae_ald:
            continue
        row = rows.get("reconstruction", name)
        if row is None:
            used, record = resolve(protocol, "reconstruct", cfg, **flags)
            t0 = time.perf_counter()
            preds, calls = _batched(
                lambda k, n, g: reconstruct_batch(
                    model, Batch.from_data_list(items[k * args.batch_size:k * args.batch_size + n]),
                    used.sampling, generator=g, sample_latent=record.latent == "sample"),
                len(items), args.batch_size, args.seed)
            report = evaluate_reconstruction(preds, truths)
            row = rows.add({"table": "reconstruction", "name": name, "seconds": time.perf_counter() - t0,
                            "match_rate": _value(report, "match_rate"), "rmse": _value(report, "rms_dist"),
                            "valid": _value(report, "valid")})
        out.append(row)
    return out


def optimisation_table(model, cfg, rows: Rows, args, property_model) -> list[dict]:
    variants = [("cdvae: unbounded, z sampled", "cdvae", None)]
    variants += [(f"ball, radius = q{q:g} of train |mu|", "genlowdim", q) for q in args.radius_quantiles]
    out = []
    for name, protocol, quantile in variants:
        row = rows.get("optimisation", name)
        if row is None:
            used, record = resolve(protocol, "optimize", cfg, sampler="ald_fast")
            t0 = time.perf_counter()
            crystals = CDVAECrystals(model, used.sampling, config=used, protocol=record, latent=record.latent,
                                     constraint=record.constraint)
            result = optimize_property(
                crystals, Path(args.out) / "opt" / name.split(",")[0].replace(" ", "_").replace(":", ""),
                split="val", num=args.num_opt, steps=args.opt_steps, decode_every=args.decode_every,
                property_model=property_model, seed=args.seed,
                **({"radius_quantile": quantile} if quantile is not None else {}))
            row = rows.add({"table": "optimisation", "name": name, "seconds": time.perf_counter() - t0,
                            "radius": result["radius"], **{k: result[k] for k in ("SR5", "SR10", "SR15")},
                            "final_valid": result["snapshots"][-1]["valid"],
                            "final_norm": result["snapshots"][-1]["mean_latent_norm"]})
        out.append(row)
    return out


def _print(title: str, rows: list[dict], keys: list[str]) -> None:
    print(f"\n{title}\n| setting | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for r in rows:
        cells = [f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys]
        print(f"| {r['name']} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint")
    p.add_argument("--model")
    p.add_argument("--property-model", default=None, help="default with --model: the shipped predictor")
    p.add_argument("--out", required=True)
    p.add_argument("--parts", default="gen,recon,opt")
    p.add_argument("--num-gen", type=int, default=200)
    p.add_argument("--num-reference", type=int, default=1000)
    p.add_argument("--num-recon", type=int, default=200)
    p.add_argument("--num-opt", type=int, default=100)
    p.add_argument("--opt-steps", type=int, default=5000, help="Adam steps on z (CDVAE: 5,000)")
    p.add_argument("--decode-every", type=int, default=555)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--radius-quantiles", type=float, nargs="+", default=[0.99, 0.9])
    p.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0],
                   help="fast-sampler steps r = step_lr/σ_min² to compare")
    p.add_argument("--steps-each", type=int, default=10, help="fast-sampler steps per noise level")
    p.add_argument("--recon-types", nargs="+", default=["argmax", "composition", "fixed"])
    p.add_argument("--skip-cdvae-ald", action="store_true", help="leave out the 5,000-call ALD rows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = load_model(checkpoint_path(args.checkpoint, args.model), "cpu", task="cdvae")
    prop_path = args.property_model or (checkpoint_path(None, args.model, "property") if args.model else None)
    property_model = load_model(prop_path, "cpu", task="property")[0] if prop_path else None
    rows = Rows(Path(args.out))
    parts = args.parts.split(",")
    print(f"checkpoint {args.checkpoint or args.model}; val split only; {args.threads} threads")
    if "gen" in parts:
        reference = batch_to_decoded(Batch.from_data_list(load_split(cfg, "val", args.num_reference))).to_structures()
        _print(f"generation, {args.num_gen} crystals per row, COV against the first {len(reference)} val crystals",
               generation_table(model, cfg, rows, args, reference),
               ["decoder_calls_per_batch", "struct_valid", "comp_valid", "cov_recall", "cov_precision", "seconds"])
    if "recon" in parts:
        _print(f"reconstruction of the first {args.num_recon} val crystals",
               reconstruction_table(model, cfg, rows, args), ["match_rate", "rmse", "valid", "seconds"])
    if "opt" in parts:
        _print(f"property optimisation from the first {args.num_opt} val crystals (scored by "
               f"{'the property predictor' if property_model else 'the CDVAE head'})",
               optimisation_table(model, cfg, rows, args, property_model),
               ["SR5", "SR10", "SR15", "radius", "final_valid", "final_norm", "seconds"])


if __name__ == "__main__":
    main()
