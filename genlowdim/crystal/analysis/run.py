"""``genlowdim analyse``: Q1 (latent union of subspaces), Q2 (Jacobian ranks) and Q4 (editing) on one trained
CDVAE, written to ``analysis.json`` (after every part) and PNGs. Q3 is
:mod:`genlowdim.crystal.analysis.memorisation`."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from genlowdim.crystal.analysis.subspaces import (LatentSettings, intrinsic_dimension, label_alignment,
                                                  union_of_subspaces)
from genlowdim.crystal.analysis.editing import EditSettings, edit_along_subspace, gallery_structures
from genlowdim.crystal.analysis.jacobians import JacobianSettings, jacobian_ranks
from genlowdim.crystal.analysis.labels import crystal_labels
from genlowdim.crystal.latents import encode_means
from genlowdim.runtime import library_versions, write_json


@dataclass(frozen=True)
class AnalysisSettings:
    splits: tuple = ("train", "val", "test")
    limit_per_split: int | None = None
    latent: LatentSettings = field(default_factory=LatentSettings)
    jacobian: JacobianSettings = field(default_factory=JacobianSettings)
    edit: EditSettings = field(default_factory=EditSettings)
    gallery_steps: tuple = (-2.0, -1.0, 0.0, 1.0, 2.0)


def quick_settings() -> AnalysisSettings:
    """Minutes-scale settings for tests and the notebook's quick mode (few crystals, few σ levels)."""
    return AnalysisSettings(
        limit_per_split=120,
        latent=LatentSettings(spectral_points=300, id_points=360, refine_iters=10),
        jacobian=JacobianSettings(num_crystals=2, num_sigmas=4),
        edit=EditSettings(num_crystals=1, num_directions=2, steps=(-2.0, 0.0, 2.0), sampler_steps=2),
        gallery_steps=(-2.0, 0.0, 2.0))


def load_with_records(cfg, split: str, limit: int | None):
    """(records, PyG items) of one split of the checkpoint's dataset."""
    from genlowdim.crystal.cdvae.training import load_split_dataset

    ds = load_split_dataset(cfg, split)
    n = len(ds) if limit is None else min(limit, len(ds))
    return ds.records[:n], [ds[i] for i in range(n)]


def other_datasets_note(max_atoms: int) -> dict:
    """Which registered datasets this model cannot encode (cells larger than its ``max_atoms``)."""
    from genlowdim.structures.registry import DATASETS

    return {name: f"cells of {spec.min_atoms}-{spec.max_atoms} atoms; this model decodes at most {max_atoms}, "
                  f"so its latents of {name} cannot be computed" for name, spec in DATASETS.items()
            if spec.min_atoms is not None and spec.min_atoms > max_atoms}


def run_analysis(model, cfg, out_dir: str | Path, settings: AnalysisSettings, *, checkpoint: str = "",
                 digits: list[dict] | None = None, log: Callable[[str], None] = print) -> dict:
    """All parts; returns the results dict (also ``analysis.json``) and writes the figures into ``out_dir``."""
    from genlowdim.crystal.analysis import plots
    from genlowdim.crystal.viz import draw_cells

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = {"name": "crystal_latent_structure", "checkpoint": checkpoint, "dataset": cfg.data.dataset,
           "settings": _jsonable(asdict(settings)), "versions": library_versions(),
           "not_encodable": other_datasets_note(model.max_atoms), "timings_s": {}}
    t0 = time.time()
    records, items, splits = [], [], {}
    for split in settings.splits:
        r, it = load_with_records(cfg, split, settings.limit_per_split)
        splits[split] = (len(items), len(items) + len(it))
        records += r
        items += it
    z = encode_means(model, items)
    labels = crystal_labels(records)
    res.update(latents={"num": int(z.shape[0]), "latent_dim": int(z.shape[1]), "splits": splits},
               labels=labels.summary())
    res["latent_intrinsic_dimension"] = intrinsic_dimension(z, settings.latent)
    union = union_of_subspaces(z, settings.latent)
    fit = union.pop("_fit")
    res["latent_subspace_dims"] = union
    res["latent_clustering"] = label_alignment(z, labels, settings.latent)
    res["timings_s"]["latents"] = time.time() - t0
    write_json(out / "analysis.json", res)
    plots.plot_latent_structure(res["latent_intrinsic_dimension"], union, out / "latent_structure.png")
    name = "anion" if "anion" in labels.labels else next(iter(labels.labels))
    plots.plot_latent_scatter(z.numpy(), labels.labels[name], labels.classes[name], f"μ coloured by {name}",
                              out / "latent_scatter.png")
    plots.plot_label_alignment(res["latent_clustering"], out / "latent_clustering.png")
    log(summary_latents(res))

    t0 = time.time()
    test_start, test_end = splits.get("test", (0, len(items)))
    res["jacobian_rank"] = jacobian_ranks(model, items[test_start:test_end], settings.jacobian)
    res["timings_s"]["jacobian"] = time.time() - t0
    write_json(out / "analysis.json", res)
    plots.plot_jacobian_ranks(res["jacobian_rank"], digits, out / "jacobian_rank.png")
    log(summary_jacobian(res["jacobian_rank"]))

    t0 = time.time()
    ids = list(range(test_start, min(test_end, test_start + settings.edit.num_crystals)))
    edit = edit_along_subspace(model, z, fit, z.double().mean(0), ids, settings.edit)
    res["editing"] = edit
    plots.plot_editing(edit, 0, out / "editing.png")
    first = edit["crystals"][0]
    direction = fit.bases[first["cluster"]][:, 0]
    structures = gallery_structures(model, cfg, z[first["crystal"]], direction, first["step_scale"],
                                    settings.gallery_steps, settings.edit, torch.Generator().manual_seed(0))
    titles = [f"α={a:+.0f}: {s.composition.reduced_formula}" for a, s in zip(settings.gallery_steps, structures)]
    draw_cells(structures, titles=titles, max_cells=len(structures), columns=len(structures),
               path=out / "editing_gallery.png")
    res["editing"]["gallery"] = [{"alpha": a, "formula": s.composition.reduced_formula,
                                  "volume_per_atom": s.volume / len(s)}
                                 for a, s in zip(settings.gallery_steps, structures)]
    res["timings_s"]["editing"] = time.time() - t0
    write_json(out / "analysis.json", res)
    log(json.dumps(edit["summary"]))
    return res


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def summary_latents(res: dict) -> str:
    i, u = res["latent_intrinsic_dimension"], res["latent_subspace_dims"]
    lines = [f"latent intrinsic dimension ({i['num_points']} crystals, {i['ambient_dim']}-d μ): PCA 90/95/99% "
             f"{i['pca_90']}/{i['pca_95']}/{i['pca_99']}, TwoNN {i['twonn']:.1f}, MLE {i['mle']:.1f}",
             f"union of subspaces: K={u['num_clusters']}, d={u['common_dim']}, cluster dims {u['cluster_dims']}, "
             f"variance kept {u['explained_union']:.3f} (one PCA subspace of d: {u['explained_single_pca_d']:.3f})"]
    for name, row in res["latent_clustering"].items():
        if "skipped" in row:
            continue
        scores = ", ".join(f"{m} {row[m]['accuracy']:.2f}/{row[m]['nmi']:.2f}"
                           for m in ("union_of_subspaces", "kmeans", "gmm", "supervised_nearest_subspace"))
        lines.append(f"  {name} (K={row['num_classes']}) accuracy/NMI: {scores}")
    return "\n".join(lines)


def summary_jacobian(jac: dict) -> str:
    lines = ["      sigma  coord  internal  types   (median numerical rank over crystals)  "
             "coordinate singular values 1-8 (median)"]
    for lv in jac["levels"]:
        sv = lv.get("coord_singular_values") or []
        top = " ".join(f"{v:.3f}" for v in np.median(np.array(sv), axis=0)[:8]) if sv else ""
        lines.append(f"{lv['sigma']:>11.4f}  {lv['median_coord']:5.1f}  {lv['median_coord_internal']:8.1f}  "
                     f"{lv['median_types']:5.1f}   {top}")
    lines.append(f"lattice head rank (∂/∂z): {jac['lattice_head_rank']}")
    return "\n".join(lines)

