"""Q3: memorisation against generalisation on crystals (the crystal counterpart of MoLRG's N ∝ d sweep).

For each training-set size N the config is trained on the first N training crystals for the same number of
optimiser steps (``train.max_steps``; epochs unbounded), ``num`` crystals are generated from z ~ N(0, I), and
each generated crystal is judged against those N training crystals with pymatgen's ``StructureMatcher``
(CDVAE's tolerances, :mod:`genlowdim.metrics.matching`):

* ``copy_fraction``: generated crystals that match a training crystal (memorisation);
* ``valid_novel_fraction``: generated crystals that are valid (structural and SMACT composition validity)
  and match none of the N training crystals (generalisation, or at least no copying).
Results go to ``memorisation.json`` after every finished N (a rerun skips finished sizes of the same settings)
and ``memorisation.png``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from matplotlib.figure import Figure

from genlowdim.runtime import library_versions, write_json


def judge_samples(structures, train_structures) -> dict:
    """Copy fraction, validity and valid-novel fraction of generated structures against the training ones."""
    from genlowdim.metrics.composition import compositional_validity
    from genlowdim.metrics.matching import novelty
    from genlowdim.metrics.structure import structural_validity

    n = len(structures)
    struct = structural_validity(structures).per_item["valid"]
    comp = compositional_validity(structures).per_item["valid"]
    valid = np.asarray(struct, bool) & np.asarray(comp, bool)
    novel = novelty(structures, train_structures, valid_mask=np.ones(n, bool)).per_item["novel"]
    return {"num_samples": n, "num_train": len(train_structures),
            "copy_fraction": float((~novel).mean()), "valid_fraction": float(valid.mean()),
            "valid_novel_fraction": float((valid & novel).mean()),
            "params": {"valid": "structural and compositional (SMACT) validity",
                       "copy": "StructureMatcher match to one of the N training crystals (stol 0.5, ltol 0.3, "
                               "angle_tol 10)"}}


def train_and_judge(cfg, n: int, steps: int, out_dir: Path, *, num: int, sampler_steps: int | None,
                    seed: int, device="cpu") -> dict:
    """Train ``cfg`` on N crystals for ``steps`` steps into ``out_dir`` and judge ``num`` generated crystals."""
    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.cdvae.sampling import generate
    from genlowdim.crystal.cdvae.training import load_split, train_cdvae

    # equal steps define the sweep: no wall-clock cap (it would also bend the step-based schedule)
    # and validation about every 100 steps, not every (tiny) epoch
    per_epoch = -(-n // cfg.train.batch_size)
    run_cfg = replace(cfg, data=replace(cfg.data, train_limit=n),
                      train=replace(cfg.train, max_steps=steps, epochs=10 ** 9, max_minutes=None, seed=seed,
                                    val_every=max(1, 100 // per_epoch)))
    result = train_cdvae(run_cfg, out_dir, device=device)
    model, _ = load_model(out_dir / "last.pt", device)
    gen = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        decoded = generate(model, num, run_cfg.sampling, steps=sampler_steps, generator=gen)
    train_structures = [r.to_structure() for r in _records(run_cfg, n)]
    row = judge_samples(decoded.to_structures(), train_structures)
    row.update(n=n, steps=int(result.steps), train_size=len(load_split(run_cfg, "train", n)))
    return row


def _records(cfg, n: int):
    from genlowdim.crystal.cdvae.training import load_split_dataset

    ds = load_split_dataset(cfg, "train")
    return ds.records[:n]


def run_memorisation(config: str | Path, sizes, steps: int, out_dir: str | Path, *, num: int = 100,
                     sampler_steps: int | None = None, intrinsic_dim: float | None = None, seed: int = 0,
                     device="cpu", log: Callable[[str], None] = print) -> dict:
    """The sweep over ``sizes``; resumable per size; returns the results dict."""
    import json

    from genlowdim.config import to_dict
    from genlowdim.crystal.cdvae.config import load_crystal_config

    cfg = load_crystal_config(config, [])
    out = Path(out_dir)
    path = out / "memorisation.json"
    settings = {"config": to_dict(cfg), "steps": steps, "num": num, "sampler_steps": sampler_steps, "seed": seed}
    res = json.loads(path.read_text()) if path.is_file() else {}
    if res.get("settings") != json.loads(json.dumps(settings)):
        res = {"name": "crystal_memorisation", "settings": settings, "versions": library_versions(), "rows": []}
    res["intrinsic_dim"] = intrinsic_dim
    done = {r["n"] for r in res["rows"]}
    for n in sizes:
        if n in done:
            continue
        row = train_and_judge(cfg, n, steps, out / f"n{n}", num=num, sampler_steps=sampler_steps, seed=seed,
                              device=device)
        if intrinsic_dim:
            row["n_over_d"] = n / intrinsic_dim
        res["rows"] = sorted(res["rows"] + [row], key=lambda r: r["n"])
        write_json(path, res)
        log(f"N={n}: copies {row['copy_fraction']:.2f}, valid {row['valid_fraction']:.2f}, "
            f"valid and novel {row['valid_novel_fraction']:.2f}")
    write_json(path, res)
    plot_memorisation(res, out / "memorisation.png")
    return res


def plot_memorisation(res: dict, path=None) -> Figure:
    """Copy fraction and valid-novel fraction against N (log axis; N/d on top when d is known)."""
    rows = res["rows"]
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    ns = [r["n"] for r in rows]
    ax.plot(ns, [r["copy_fraction"] for r in rows], "x--", label="copies of a training crystal")
    ax.plot(ns, [r["valid_novel_fraction"] for r in rows], "o-", label="valid and novel")
    ax.plot(ns, [r["valid_fraction"] for r in rows], ":", color="grey", label="valid")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training crystals N" + (f" (d = {res['intrinsic_dim']:.1f})" if res.get("intrinsic_dim") else ""))
    ax.set_ylabel("fraction of generated crystals")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
