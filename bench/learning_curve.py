"""Learning curve of a crystal training run, from the checkpoints it kept (``step_<N>.pt``, written with
``train.keep_every``), on perov_5's **val** split: val loss (the run's own val.csv, nearest validation),
reconstruction (``cdvae`` protocol with the fast sampler: z sampled from q(z|x), argmax types) of the first
``--num-recon`` val crystals, and COV-R / COV-P / validity of ``--num-gen`` generated crystals against the
first ``--num-ref`` val crystals; each against crystal visits (steps x batch) and training hours, counting
those of the run a warm restart (``train.init_from``) started from.

Every row goes to OUT/rows.jsonl as soon as it is measured (a rerun skips finished checkpoints); OUT/curve.png
is redrawn after each. ``--reference-checkpoint`` adds a row for another model (e.g. the shipped one).
Usage: python bench/learning_curve.py RUN --out OUT [--num-recon 200] [--num-gen 500] [--sampler ald_fast]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genlowdim.crystal.cdvae.checkpoints import load_model  # noqa: E402
from genlowdim.crystal.pretrained import checkpoint_path  # noqa: E402
from genlowdim.crystal.cdvae.protocols import resolve  # noqa: E402
from genlowdim.crystal.cdvae.sampling import generate, reconstruct_batch  # noqa: E402
from genlowdim.crystal.decoded import batch_to_decoded  # noqa: E402
from genlowdim.crystal.cdvae.training import load_split  # noqa: E402
from genlowdim.metrics.evaluate import evaluate_generation, evaluate_reconstruction  # noqa: E402
from genlowdim.runtime import load_checkpoint  # noqa: E402


def _value(report: dict, key: str):
    v = report["metrics"].get(key)
    return v.get("value") if isinstance(v, dict) else v


def _val_loss_near(run: Path, step: int) -> float | None:
    """The run's val_loss at the validation closest to ``step`` (val.csv), or None."""
    path = run / "val.csv"
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.open()))
    if not rows:
        return None
    best = min(rows, key=lambda r: abs(int(r["step"]) - step))
    return float(best["val_loss"])


def inherited(payload: dict, depth: int = 0) -> tuple[int, float]:
    """Crystal visits and training hours of the run(s) a warm restart started from (``train.init_from``,
    followed back), so that a continued run's rows sit after its parent's on the same axis."""
    source = (payload.get("settings") or {}).get("init_from")
    if not source or depth > 20:
        return 0, 0.0
    parent = load_checkpoint(Path(source), map_location="cpu")
    state = parent.get("train_state") or {}
    visits, hours = inherited(parent, depth + 1)
    return (visits + int(state.get("step", 0)) * int((parent.get("settings") or {}).get("batch_size", 0)),
            hours + float(state.get("elapsed_s", 0.0)) / 3600)


def measure(checkpoint: Path, args, val_items, truths, reference) -> dict:
    """One row: the checkpoint's EMA weights on val (reconstruction and generation)."""
    model, cfg = load_model(checkpoint, task="cdvae")
    payload = load_checkpoint(checkpoint, map_location="cpu")
    state = payload.get("train_state") or {}
    step = int(state.get("step", 0))
    batch_size = int((payload.get("settings") or {}).get("batch_size", cfg.train.batch_size))
    recon_cfg, _ = resolve("cdvae", "reconstruct", cfg, sampler=args.sampler)
    t0 = time.perf_counter()
    preds = []
    for k in range(0, len(val_items), args.batch_size):
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + k)
        preds += reconstruct_batch(model, Batch.from_data_list(val_items[k:k + args.batch_size]),
                                   recon_cfg.sampling, generator=gen, sample_latent=True).to_structures()
    recon = evaluate_reconstruction(preds, truths)
    gen_cfg, _ = resolve("genlowdim", "sample", cfg, sampler=args.sampler)
    structures = []
    for k in range(0, args.num_gen, args.batch_size):
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + k)
        n = min(args.batch_size, args.num_gen - k)
        structures += generate(model, n, gen_cfg.sampling, generator=gen).to_structures()
    report = evaluate_generation(structures, reference, dataset="perov_5", seed=args.seed, compute_unique=False,
                                 show_progress=False, num_wdist_seeds=0,
                                 reference_cache_key=f"perov_5:val[:{args.num_ref}]")
    before_visits, before_hours = inherited(payload)
    return {"checkpoint": str(checkpoint), "step": step, "visits": before_visits + step * batch_size,
            "train_hours": before_hours + float(state.get("elapsed_s", 0.0)) / 3600,
            "val_loss": _val_loss_near(checkpoint.parent, step) if step else None,
            "recon_match": _value(recon, "match_rate"), "recon_rmse": _value(recon, "rms_dist"),
            **{k: _value(report, k) for k in ("struct_valid", "comp_valid", "cov_recall", "cov_precision")},
            "eval_seconds": time.perf_counter() - t0}


def plot(rows: list[dict], path: Path) -> None:
    """Each figure against crystal visits: the run's kept checkpoints as lines, a reference checkpoint (not a
    ``step_<N>.pt``) as a star at its own visits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((r for r in rows if r["step"]), key=lambda r: r["visits"])
    run = [r for r in rows if Path(r["checkpoint"]).name.startswith("step_")]
    refs = [r for r in rows if r not in run]
    if not rows:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [(axes[0], [("val_loss", "val loss", "o-")]),
              (axes[1], [("recon_match", "match rate", "o-"), ("recon_rmse", "RMSE (normalised)", "s--")]),
              (axes[2], [("cov_recall", "COV-R", "o-"), ("cov_precision", "COV-P", "o-"),
                         ("struct_valid", "struct valid", "o-")])]
    for ax, series in panels:
        for key, label, style in series:
            line, = ax.plot([r["visits"] / 1e6 for r in run], [r[key] for r in run], style, label=label)
            for r in refs:
                if r[key] is not None:
                    ax.plot(r["visits"] / 1e6, r[key], "*", ms=12, color=line.get_color())
    axes[0].set_ylabel("val loss (10·coord + type)")
    axes[1].set_ylabel("val reconstruction (cdvae protocol)")
    axes[2].set_ylabel("val generation (fraction)")
    for ax in axes:
        ax.set_xlabel("crystal visits (millions)")
        ax.grid(alpha=0.3)
    if refs:
        axes[1].set_title("stars: " + ", ".join(Path(r["checkpoint"]).parent.name for r in refs), fontsize=8)
    axes[1].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", help="training output folder holding step_<N>.pt")
    p.add_argument("--out", required=True)
    p.add_argument("--reference-checkpoint", default=None, help="e.g. a shipped model's cdvae.pt, as a row")
    p.add_argument("--num-recon", type=int, default=200)
    p.add_argument("--num-gen", type=int, default=500)
    p.add_argument("--num-ref", type=int, default=500)
    p.add_argument("--sampler", default="ald_fast")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.is_file() else []
    done = {r["checkpoint"] for r in rows}
    checkpoints = sorted(Path(args.run).glob("step_*.pt"))
    if args.reference_checkpoint:
        checkpoints.insert(0, Path(checkpoint_path(args.reference_checkpoint, None)))
    _, cfg = load_model(checkpoints[0], task="cdvae") if checkpoints else (None, None)
    if cfg is None:
        raise SystemExit(f"{args.run}: no step_<N>.pt checkpoints (train with train.keep_every)")
    val_items = load_split(cfg, "val", args.num_recon)
    truths = batch_to_decoded(Batch.from_data_list(val_items)).to_structures()
    reference = [batch_to_decoded(Batch.from_data_list([d])).to_structures()[0]
                 for d in load_split(cfg, "val", args.num_ref)]
    for ckpt in checkpoints:
        if str(ckpt) in done:
            continue
        row = measure(ckpt, args, val_items, truths, reference)
        rows.append(row)
        with rows_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        plot(rows, out / "curve.png")
        print(json.dumps(row), flush=True)
    plot(rows, out / "curve.png")
    print(f"{'step':>7}{'visits (M)':>11}{'hours':>7}{'val loss':>9}{'recon':>7}{'RMSE':>7}"
          f"{'struct':>7}{'comp':>6}{'COV-R':>7}{'COV-P':>7}")
    for r in sorted(rows, key=lambda r: r["visits"]):
        print(f"{r['step']:>7}{r['visits'] / 1e6:>11.2f}{r['train_hours']:>7.2f}{r['val_loss'] or float('nan'):>9.3f}"
              f"{r['recon_match']:>7.3f}{r['recon_rmse'] or float('nan'):>7.3f}{r['struct_valid']:>7.3f}"
              f"{r['comp_valid']:>6.3f}{r['cov_recall']:>7.3f}{r['cov_precision']:>7.3f}")


if __name__ == "__main__":
    main()
