"""``genlowdim demo`` (``make demo``): the shipped perov_5 model first, then a short training run of one's own.

1. ``shipped/``: ``num`` crystals from the shipped model (``--model perov_5``) with the ``genlowdim`` protocol,
   evaluated against perov_5's whole test split (3,785 crystals, whose fingerprints, densities and element
   counts ship with the package: :mod:`genlowdim.metrics.reference_data`); ``cells.png`` draws a few of them.
2. ``train/`` + ``trained/``: the demo config trained for its step budget (``configs/crystal/demo.yaml``),
   then sampled, evaluated and drawn the same way, to show what a few minutes of training buy.

``demo.json`` holds the headline numbers of both parts, the settings used and where everything is.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from genlowdim.crystal.cdvae.checkpoints import load_model
from genlowdim.crystal.cdvae.config import load_crystal_config
from genlowdim.crystal.pretrained import available_models, resolve_model
from genlowdim.crystal.cdvae.protocols import resolve
from genlowdim.crystal.tasks.demo_summary import SMOKE_LABEL, format_summary
from genlowdim.crystal.tasks.generate import sample_crystals
from genlowdim.crystal.cdvae.training import train_cdvae
from genlowdim.crystal.viz import draw_cells
from genlowdim.metrics.evaluate import evaluate_generation
from genlowdim.runtime import write_json
from genlowdim.structures.datasets import load_structures
from genlowdim.structures.registry import get_spec
from genlowdim.structures.io import read_structures

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "crystal" / "demo.yaml"
SHIPPED = "perov_5"
REFERENCE = "perov_5:test"     # the split the shipped reference data describe
KNOWN = "test_generation_genlowdim"   # the shipped model's measured figures quoted for scale


def _sample_and_evaluate(checkpoint, out: Path, num: int, reference: tuple[str, list], device) -> dict:
    """Sample ``num`` crystals (genlowdim protocol), evaluate them against ``reference`` (its name, its
    structures), draw six."""
    model, cfg = load_model(checkpoint, device, task="cdvae")
    cfg, record = resolve("genlowdim", "sample", cfg)
    t0 = time.perf_counter()
    manifest = sample_crystals(model, cfg, num, out / "samples", batch_size=min(num, 250), seed=0,
                               checkpoint=str(checkpoint), overwrite=True, protocol=record)
    seconds = time.perf_counter() - t0
    structures = [s for _, s in read_structures(out / "samples" / "samples.extxyz")]
    report = evaluate_generation(structures, reference[1], dataset="perov_5", seed=0, out_dir=out / "eval",
                                 reference_cache_key=reference[0])
    draw_cells(structures, path=out / "cells.png")
    return {"checkpoint": str(checkpoint), "num_generated": manifest["count"], "sample_seconds": seconds,
            "protocol": record.to_dict(), "decoder_calls": manifest["decoder_calls"], "metrics": _headline(report),
            "files": {"cells": str(out / "cells.png"), "samples": str(out / "samples"),
                      "evaluation": str(out / "eval")}}


def run_demo(out: str | Path = "runs/demo", *, steps: int | None = None, num: int = 200, device="cpu",
             num_reference: int | None = None) -> dict:
    """The shipped model's samples (when the installation has it), then the demo config trained for
    ``steps`` optimiser steps (default: the config's ``train.max_steps``) and sampled, both evaluated against
    perov_5's test split (its first ``num_reference`` crystals; default all); returns the summary."""
    out, started = Path(out), time.perf_counter()
    cfg = load_crystal_config(CONFIG)
    if steps is not None:
        cfg = replace(cfg, train=replace(cfg.train, max_steps=int(steps)))
    reference = _reference(num_reference)
    summary = {"num_reference": len(reference[1]), "reference": reference[0],
               "cov_thresholds": list(get_spec(SHIPPED).cov_thresholds)}
    if SHIPPED in available_models():
        print(f"demo: 1/2: {num} crystals from the shipped {SHIPPED} model, evaluated against "
              f"{len(reference[1]):,} test crystals", flush=True)
        summary["shipped"] = _sample_and_evaluate(resolve_model(SHIPPED), out / "shipped", num, reference, device)
        summary["shipped"]["known"] = available_models()[SHIPPED].get("metrics", {}).get(KNOWN)
        print(f"demo: shipped {SHIPPED} model: {num} crystals in {summary['shipped']['sample_seconds']:.0f} s; "
              f"next, a smoke run of {cfg.train.max_steps:,} training steps", flush=True)
    else:
        print(f"demo: this installation ships no {SHIPPED} model; training one of its own only")
    t0 = time.perf_counter()
    result = train_cdvae(cfg, out / "train", resume=(out / "train" / "last.pt").exists(), device=device)
    summary["trained"] = {"label": SMOKE_LABEL, "train_steps": result.steps, "budget_steps": cfg.train.max_steps,
                          "cap_minutes": cfg.train.max_minutes, "train_seconds": time.perf_counter() - t0,
                          "loss_curve": str(out / "train" / "loss.png"),
                          **_sample_and_evaluate(result.last_checkpoint, out / "trained", num, reference, device)}
    summary["wall_seconds"] = time.perf_counter() - started
    write_json(out / "demo.json", summary)
    print(format_summary(summary, str(out), summary["wall_seconds"]))
    return summary


def _reference(num: int | None) -> tuple[str, list]:
    """(name, structures) of the test split or its first ``num`` crystals, preprocessed as ``genlowdim
    evaluate --reference perov_5:test`` reads them (the structures the shipped reference data describe)."""
    structures = load_structures(REFERENCE)[1]
    if num is None or num >= len(structures):
        return REFERENCE, structures
    return f"{REFERENCE}[:{num}]", structures[:num]


def _headline(report: dict) -> dict:
    keys = ("struct_valid", "comp_valid", "cov_recall", "cov_precision", "wdist_density", "wdist_num_elems")
    metrics = report.get("metrics", report)
    out = {}
    for k in keys:
        v = metrics.get(k)
        out[k] = v.get("value") if isinstance(v, dict) else v
    return out
