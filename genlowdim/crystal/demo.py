"""``genlowdim demo``: train the demo CDVAE for a few minutes, sample, evaluate, plot (``make demo``).

Leaves in ``out``: ``train/`` (checkpoints, log.csv, loss.png), ``samples/`` (CIFs, samples.extxyz,
manifest.json), ``eval/`` (metrics JSON, per-crystal CSV, property histograms), ``cells.png`` (a few generated
cells) and ``demo.json`` (the headline numbers and where everything is).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from torch_geometric.data import Batch

from genlowdim.crystal.checkpoints import load_model
from genlowdim.crystal.config import load_crystal_config
from genlowdim.crystal.sampling import batch_to_decoded
from genlowdim.crystal.tasks import sample_crystals
from genlowdim.crystal.training import load_split, train_cdvae
from genlowdim.metrics.evaluate import evaluate_generation
from genlowdim.runtime import write_json
from genlowdim.structures.io import read_structures

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "crystal" / "demo.yaml"


def plot_cells(structures, path: Path, max_cells: int = 6) -> Path:
    """3-D pictures of the first ``max_cells`` structures: atoms coloured by element, cell edges drawn."""
    import itertools

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = structures[:max_cells]
    fig = plt.figure(figsize=(3.2 * len(shown), 3.4))
    for k, s in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), k + 1, projection="3d")
        m = s.lattice.matrix
        for a, b in itertools.combinations(list(itertools.product([0, 1], repeat=3)), 2):
            if sum(x != y for x, y in zip(a, b)) == 1:
                p, q = np.array(a) @ m, np.array(b) @ m
                ax.plot(*zip(p, q), color="grey", lw=0.6)
        for el in sorted({site.specie.symbol for site in s}):
            xyz = np.array([site.coords for site in s if site.specie.symbol == el])
            ax.scatter(*xyz.T, s=60, label=el)
        ax.set_title(s.composition.reduced_formula, fontsize=9)
        ax.set_axis_off()
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(out: str | Path = "runs/demo", *, minutes: float | None = None, num: int = 200, device="cpu",
             num_reference: int = 500) -> dict:
    """Train (``minutes`` overrides the config's budget), sample ``num`` crystals with the config's sampler,
    evaluate against the first ``num_reference`` perov_5 test crystals; returns the summary dict."""
    out = Path(out)
    cfg = load_crystal_config(CONFIG)
    if minutes is not None:
        cfg = replace(cfg, train=replace(cfg.train, max_minutes=float(minutes)))
    t0 = time.perf_counter()
    result = train_cdvae(cfg, out / "train", resume=(out / "train" / "last.pt").exists(), device=device)
    t_train = time.perf_counter() - t0
    model, cfg = load_model(result.last_checkpoint, device, task="cdvae")
    manifest = sample_crystals(model, cfg, num, out / "samples", batch_size=min(num, 250), seed=0,
                               checkpoint=str(result.last_checkpoint), overwrite=True)   # this run's model
    t_sample = time.perf_counter() - t0 - t_train
    structures = [s for _, s in read_structures(out / "samples" / "samples.extxyz")]
    reference = batch_to_decoded(Batch.from_data_list(load_split(cfg, "test", num_reference))).to_structures()
    report = evaluate_generation(structures, reference, dataset="perov_5", seed=0, out_dir=out / "eval")
    plot_cells(structures, out / "cells.png")
    summary = {"train_steps": result.steps, "train_seconds": t_train, "sample_seconds": t_sample,
               "num_generated": manifest["count"], "sampler": manifest["sampler"],
               "num_reference": len(reference), "metrics": _headline(report),
               "files": {"loss_curve": str(out / "train" / "loss.png"), "cells": str(out / "cells.png"),
                         "samples": str(out / "samples"), "evaluation": str(out / "eval")}}
    write_json(out / "demo.json", summary)
    print(f"demo: {result.steps} steps in {t_train / 60:.1f} min; {manifest['count']} crystals; "
          f"metrics {summary['metrics']}; everything in {out}")
    return summary


def _headline(report: dict) -> dict:
    keys = ("struct_valid", "comp_valid", "cov_recall", "cov_precision", "wdist_density", "wdist_num_elems")
    metrics = report.get("metrics", report)
    out = {}
    for k in keys:
        v = metrics.get(k)
        out[k] = v.get("value") if isinstance(v, dict) else v
    return out
