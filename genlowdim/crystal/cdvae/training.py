"""Training glue of the crystal family: data splits, model construction, scalers, loss and validation
functions for the shared engine (``genlowdim.train``).

``train_cdvae(cfg, out)`` trains CDVAE (or, with ``task: property``, the property predictor). Loading a
trained model is :mod:`genlowdim.crystal.cdvae.checkpoints`; generation, reconstruction and optimisation are
:mod:`genlowdim.crystal.tasks.generate` and :mod:`genlowdim.crystal.tasks.optimize`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch_geometric.data import Batch

from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.config import CrystalConfig
from genlowdim.crystal.data import load_dataset
from genlowdim.crystal.cdvae.model import CDVAE, scaled_lattice_target
from genlowdim.crystal.cdvae.property import PropertyPredictor
from genlowdim.structures.folders import find_dataset_folder, folder_max_atoms, folder_property, split_files
from genlowdim.structures.registry import get_spec
from genlowdim.train import fit
from genlowdim.train_logs import plot_losses

FAMILY = "crystal"


def resolve_max_atoms(cfg: CrystalConfig) -> int:
    """The config's ``data.max_atoms``, else a dataset folder's largest cell, else the registered maximum."""
    if cfg.data.max_atoms is not None:
        return int(cfg.data.max_atoms)
    folder = find_dataset_folder(cfg.data.dataset, cfg.data.data_dir)
    if folder is not None:
        return folder_max_atoms(folder, cfg.data.niggli)
    return int(get_spec(cfg.data.dataset).max_atoms)


def load_split_dataset(cfg: CrystalConfig, split: str):
    """The ``CrystalDataset`` of one split of the config's dataset: a registered name, a folder, or a folder
    ``NAME`` under ``data.data_dir`` (whose imported property column becomes ``y``)."""
    name, split_arg, prop = cfg.data.dataset, split, None
    folder = find_dataset_folder(cfg.data.dataset, cfg.data.data_dir)
    if folder is not None:   # a folder of CDVAE-format split files (genlowdim data import writes them)
        files = split_files(folder)
        if split not in files:
            raise FileNotFoundError(f"{folder}: no {split}.csv or {split}.csv.gz")
        name, split_arg, prop = str(files[split]), None, folder_property(folder)
    return load_dataset(name, split_arg, niggli=cfg.data.niggli, max_atoms=resolve_max_atoms(cfg),
                        data_dir=cfg.data.data_dir, property=prop)


def load_split(cfg: CrystalConfig, split: str, limit: int | None = None):
    """Items (PyG ``Data``) of one split, at most ``limit``; raises ValueError if none are usable."""
    ds = load_split_dataset(cfg, split)
    items = [ds[i] for i in range(len(ds) if limit is None else min(limit, len(ds)))]
    if not items:
        raise ValueError(f"dataset {cfg.data.dataset!r} split {split!r}: no usable crystals "
                         f"(max_atoms={resolve_max_atoms(cfg)}; see the loader's report of skipped rows)")
    return items


def build_model(cfg: CrystalConfig, max_atoms: int):
    """CDVAE for ``task: cdvae``; :class:`PropertyPredictor` for ``task: property``."""
    if cfg.task == "property":
        return PropertyPredictor(cfg.model)
    return CDVAE(cfg.model, max_atoms)


def fit_scalers(model, items) -> None:
    """Fit the lattice and property standardisers on the training items (CDVAE fits them on train)."""
    y = torch.cat([d.y.view(-1, 1) for d in items]).float() if "y" in items[0] else None
    if hasattr(model, "lattice_scaler"):
        lengths = torch.cat([d.lengths.view(1, 3) for d in items]).float()
        angles = torch.cat([d.angles.view(1, 3) for d in items]).float()
        num_atoms = torch.cat([torch.as_tensor(d.num_atoms).view(1) for d in items])
        model.lattice_scaler.fit(scaled_lattice_target(lengths, angles, num_atoms))
    if y is not None and torch.isfinite(y).all():
        model.property_scaler.fit(y)


def check_property(cfg: CrystalConfig, items) -> None:
    """ConfigError when the config asks for a property head and the training data has no finite property."""
    from genlowdim.config import ConfigError

    if getattr(cfg.model, "predict_property", False) and not all(torch.isfinite(d.y).all() for d in items):
        raise ConfigError(f"model.predict_property is true but dataset {cfg.data.dataset!r} has no finite "
                          f"property for every training crystal: import it with --property COLUMN, or "
                          f"--set model.predict_property=false")


def make_loss_fn(cfg: CrystalConfig):
    """Engine ``loss_fn``: the model's forward with the engine's generator; teacher forcing by epoch."""
    def loss_fn(model, batch, ctx):
        teacher = ctx.epoch < cfg.model.teacher_forcing_max_epoch
        loss, parts = model(batch, ctx.generator, teacher)
        return loss, {k: float(v.detach()) for k, v in parts.items()}
    return loss_fn


def make_val_fn(cfg: CrystalConfig, val_items, device, seed: int = 12345):
    """Deterministic validation: fixed noise (own generator) on the validation items, CDVAE's val loss
    10·coord + type (or the property MSE for the predictor)."""
    def val_fn(model):
        gen = torch.Generator(device).manual_seed(seed)
        totals, count = {}, 0
        for i in range(0, len(val_items), cfg.train.batch_size):
            batch = Batch.from_data_list(val_items[i:i + cfg.train.batch_size]).to(device)
            _, parts = model(batch, gen, True)
            n = int(batch.num_graphs)
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + float(v) * n
            count += n
        out = {f"val_{k}": v / count for k, v in totals.items()}
        if cfg.task == "property":
            out["val_loss"] = out["val_property"]
        else:
            out["val_loss"] = cfg.model.cost_coord * out["val_coord"] + cfg.model.cost_type * out["val_type"]
        return out
    return val_fn


def train_cdvae(cfg: CrystalConfig, out_dir: str | Path, *, resume: bool = False, device="cpu"):
    """Train from ``cfg`` into ``out_dir`` (``last.pt``, ``best.pt``, ``log.csv``, ``loss.png``).

    Returns the engine's ``FitResult``. Raises ValueError for an empty training set."""
    device = torch.device(device)
    max_atoms = resolve_max_atoms(cfg)
    train_items = load_split(cfg, "train", cfg.data.train_limit)
    val_items = load_split(cfg, "val", cfg.data.val_limit)
    with torch.random.fork_rng(devices=[]):   # seeded initial weights, global RNG left untouched
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg, max_atoms)
    check_property(cfg, train_items)
    fit_scalers(model, train_items)
    if hasattr(model, "encoder"):   # the training cells never change: build the encoder's edges once
        model.encoder.attach_edges(train_items)
        model.encoder.attach_edges(val_items)
    result = fit(model, train_items, loss_fn=make_loss_fn(cfg), val_fn=make_val_fn(cfg, val_items, device),
                 settings=cfg.train, out_dir=out_dir, family=FAMILY, config=to_dict(cfg),
                 extra_state={"max_atoms": max_atoms, "task": cfg.task, "elements": seen_elements(train_items)},
                 resume=resume, device=device)
    plot_losses(out_dir)
    return result


def seen_elements(items) -> list[int]:
    """Sorted atomic numbers occurring in ``items`` (the training crystals a checkpoint records, so that
    tasks can refuse formulas with elements the model never saw)."""
    found = set()
    for item in items:
        found.update(int(z) for z in item.atom_types.tolist())
    return sorted(found)


def with_overrides(cfg: CrystalConfig, **train_fields) -> CrystalConfig:
    """Copy of ``cfg`` with some ``train`` settings replaced (tests, demos)."""
    return replace(cfg, train=replace(cfg.train, **train_fields))
