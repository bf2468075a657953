"""Typed entry points of the crystal family; the CLI and notebooks call these and get data back.

``train_cdvae(cfg, out)`` trains CDVAE (or, with ``task: property``, the property predictor) through the
shared engine; ``load_model(checkpoint)`` rebuilds a trained model; ``sample_crystals`` generates and writes
crystals batch by batch; ``reconstruct`` and ``optimize_property`` live in :mod:`genlowdim.crystal.tasks`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from genlowdim.crystal.config import CrystalConfig, config_from_dict

FAMILY = "crystal"


def resolve_max_atoms(cfg: CrystalConfig) -> int:
    """The config's ``data.max_atoms`` or the dataset's registered maximum."""
    if cfg.data.max_atoms is not None:
        return int(cfg.data.max_atoms)
    if Path(cfg.data.dataset).is_dir():
        raise ValueError(f"data.dataset {cfg.data.dataset!r} is a folder: set data.max_atoms in the config")
    from genlowdim.crystal.registry import get_spec

    return int(get_spec(cfg.data.dataset).max_atoms)


def load_split(cfg: CrystalConfig, split: str, limit: int | None = None):
    """Items (PyG ``Data``) of one split, at most ``limit``; raises ValueError if none are usable."""
    from genlowdim.crystal.data import load_dataset

    source, name = Path(cfg.data.dataset), cfg.data.dataset
    if source.is_dir():   # a folder of CDVAE-format split files
        found = [source / f"{split}{ext}" for ext in (".csv", ".csv.gz") if (source / f"{split}{ext}").is_file()]
        if not found:
            raise FileNotFoundError(f"{source}: no {split}.csv or {split}.csv.gz")
        name, split_arg = str(found[0]), None
    else:
        split_arg = split
    ds = load_dataset(name, split_arg, niggli=cfg.data.niggli, max_atoms=resolve_max_atoms(cfg))
    items = [ds[i] for i in range(len(ds) if limit is None else min(limit, len(ds)))]
    if not items:
        raise ValueError(f"dataset {cfg.data.dataset!r} split {split!r}: no usable crystals "
                         f"(max_atoms={resolve_max_atoms(cfg)}; see the loader's report of skipped rows)")
    return items


def build_model(cfg: CrystalConfig, max_atoms: int):
    """CDVAE for ``task: cdvae``; :class:`PropertyPredictor` for ``task: property``."""
    if cfg.task == "property":
        from genlowdim.crystal.property import PropertyPredictor

        return PropertyPredictor(cfg.model)
    from genlowdim.crystal.model import CDVAE

    return CDVAE(cfg.model, max_atoms)


def fit_scalers(model, items) -> None:
    """Fit the lattice and property standardisers on the training items (CDVAE fits them on train)."""
    from genlowdim.crystal.model import scaled_lattice_target

    y = torch.cat([d.y.view(-1, 1) for d in items]).float() if "y" in items[0] else None
    if hasattr(model, "lattice_scaler"):
        lengths = torch.cat([d.lengths.view(1, 3) for d in items]).float()
        angles = torch.cat([d.angles.view(1, 3) for d in items]).float()
        num_atoms = torch.cat([torch.as_tensor(d.num_atoms).view(1) for d in items])
        model.lattice_scaler.fit(scaled_lattice_target(lengths, angles, num_atoms))
    if y is not None and torch.isfinite(y).all():
        model.property_scaler.fit(y)


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
    from torch_geometric.data import Batch

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
    from genlowdim.config import to_dict
    from genlowdim.train import fit, plot_losses

    device = torch.device(device)
    max_atoms = resolve_max_atoms(cfg)
    train_items = load_split(cfg, "train", cfg.data.train_limit)
    val_items = load_split(cfg, "val", cfg.data.val_limit)
    with torch.random.fork_rng(devices=[]):   # seeded initial weights, global RNG left untouched
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg, max_atoms)
    fit_scalers(model, train_items)
    result = fit(model, train_items, loss_fn=make_loss_fn(cfg), val_fn=make_val_fn(cfg, val_items, device),
                 settings=cfg.train, out_dir=out_dir, family=FAMILY, config=to_dict(cfg),
                 extra_state={"max_atoms": max_atoms, "task": cfg.task}, resume=resume, device=device)
    plot_losses(out_dir)
    return result


def load_model(checkpoint, device="cpu", use_ema: bool = True, task: str | None = None):
    """(model in eval mode, config) from a checkpoint path or an already loaded payload.

    Uses the EMA weights when the run kept them. ``task`` checks the kind of model stored."""
    from genlowdim.runtime import CheckpointError, load_checkpoint

    payload = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, family=FAMILY)
    if payload.get("family") != FAMILY:
        raise CheckpointError(f"checkpoint is of the {payload.get('family')!r} family, expected 'crystal'")
    cfg = config_from_dict(payload["config"])
    if task is not None and cfg.task != task:
        raise CheckpointError(f"checkpoint holds a {cfg.task!r} model, this command needs a {task!r} model")
    model = build_model(cfg, payload["extra_state"]["max_atoms"])
    state = payload.get("ema_state_dict") if use_ema and payload.get("ema_state_dict") else payload["state_dict"]
    model.load_state_dict(state)
    return model.to(device).eval(), cfg


def with_overrides(cfg: CrystalConfig, **train_fields) -> CrystalConfig:
    """Copy of ``cfg`` with some ``train`` settings replaced (tests, demos)."""
    return replace(cfg, train=replace(cfg.train, **train_fields))


# ---- generation written to disk, batch by batch -------------------------------------------------------
def _batch_dir(out: Path, k: int) -> Path:
    return out / "batches" / f"batch_{k:05d}"


def _write_batch(out: Path, k: int, structures, ids, info) -> None:
    from genlowdim.crystal.io import write_cif, write_extxyz
    from genlowdim.runtime import write_json

    bdir = _batch_dir(out, k)
    write_cif(structures, out / "cif", ids=ids)
    write_extxyz(structures, bdir / "samples.extxyz", ids=ids)
    write_json(bdir / "done.json", {"ids": ids, **info})   # written last: marks the batch finished


def _finished_batches(out: Path, num_batches: int) -> list[int]:
    return [k for k in range(num_batches) if (_batch_dir(out, k) / "done.json").is_file()]


def _merge_batches(out: Path, num_batches: int) -> int:
    """Concatenate the finished batches' extxyz into ``out/samples.extxyz`` (atomic). Returns the count."""
    from genlowdim.runtime import atomic_write_text

    texts, count = [], 0
    for k in _finished_batches(out, num_batches):
        texts.append((_batch_dir(out, k) / "samples.extxyz").read_text())
        import json

        count += len(json.loads((_batch_dir(out, k) / "done.json").read_text())["ids"])
    atomic_write_text(out / "samples.extxyz", "".join(texts))
    return count


def sample_crystals(model, cfg: CrystalConfig, num: int, out_dir: str | Path, *, batch_size: int = 500,
                    seed: int = 0, sampler: str | None = None, steps: int | None = None,
                    checkpoint: str | None = None) -> dict:
    """Generate ``num`` crystals into ``out_dir``: ``cif/<id>.cif``, ``samples.extxyz``, ``manifest.json``.

    Batch k uses a generator seeded with (seed, k), so finished batches (``batches/batch_k/done.json``) are
    skipped on a rerun and the result is the same as one uninterrupted run. Returns the manifest."""
    import time

    from genlowdim.config import to_dict
    from genlowdim.crystal.sampling import generate
    from genlowdim.runtime import library_versions, progress, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sampler = sampler or cfg.sampling.sampler
    num_batches = -(-num // batch_size)
    done = set(_finished_batches(out, num_batches))
    device = next(model.parameters()).device
    manifest = {"num": num, "batch_size": batch_size, "seed": seed, "sampler": sampler, "steps": steps,
                "checkpoint": str(checkpoint) if checkpoint else None, "sampling_config": to_dict(cfg.sampling),
                "versions": library_versions(), "batches": []}
    for k in progress(range(num_batches), desc="sampling batches"):
        if k in done:
            continue
        n = min(batch_size, num - k * batch_size)
        gen = torch.Generator(device).manual_seed(seed * 1_000_003 + k)
        t0 = time.perf_counter()
        decoded = generate(model, n, cfg.sampling, sampler=sampler, steps=steps, generator=gen)
        ids = [f"gen_{k * batch_size + i:06d}" for i in range(n)]
        _write_batch(out, k, decoded.to_structures(), ids,
                     {"seconds": time.perf_counter() - t0, "decoder_calls": decoded.decoder_calls})
        _merge_batches(out, num_batches)
    manifest["count"] = _merge_batches(out, num_batches)
    manifest["batches"] = [k for k in _finished_batches(out, num_batches)]
    write_json(out / "manifest.json", manifest)
    return manifest


# ---- reconstruction and property optimisation ---------------------------------------------------------
# 5th/10th/15th percentiles of the property (REFERENCE.md §1, from CDVAE)
SR_THRESHOLDS = {"perov_5": (0.4392, 0.6120, 0.7365), "carbon_24": (-154.5271, -154.4587, -154.4421),
                 "mp_20": (-3.1756, -2.8220, -2.5281)}


def _item_id(item, split: str, index: int) -> str:
    mid = getattr(item, "material_id", None)
    return str(mid) if mid is not None else f"{split}_{index:06d}"


def reconstruct(model, cfg: CrystalConfig, split: str, out_dir: str | Path, *, num: int | None = None,
                batch_size: int = 500, seed: int = 0, sampler: str | None = None,
                steps: int | None = None) -> dict:
    """Encode + decode the first ``num`` crystals of ``split``; writes ``truth.extxyz`` (first) and
    ``predictions.extxyz`` (grown batch by batch; finished batches are skipped on a rerun), same ids/order."""
    from torch_geometric.data import Batch

    from genlowdim.crystal.io import write_extxyz
    from genlowdim.crystal.sampling import batch_to_decoded, reconstruct_batch
    from genlowdim.runtime import progress, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = load_split(cfg, split, num)
    ids = [_item_id(d, split, i) for i, d in enumerate(items)]
    truths = batch_to_decoded(Batch.from_data_list(items)).to_structures()
    write_extxyz(truths, out / "truth.extxyz", ids=ids)
    sampler = sampler or cfg.sampling.sampler
    device = next(model.parameters()).device
    num_batches = -(-len(items) // batch_size)
    done = set(_finished_batches(out, num_batches))
    for k in progress(range(num_batches), desc="reconstructing batches"):
        if k in done:
            continue
        chunk = slice(k * batch_size, (k + 1) * batch_size)
        batch = Batch.from_data_list(items[chunk]).to(device)
        gen = torch.Generator(device).manual_seed(seed * 1_000_003 + k)
        decoded = reconstruct_batch(model, batch, cfg.sampling, sampler=sampler, steps=steps, generator=gen)
        _write_batch(out, k, decoded.to_structures(), ids[chunk], {"decoder_calls": decoded.decoder_calls})
    count = _merge_batches(out, num_batches)
    (out / "samples.extxyz").replace(out / "predictions.extxyz")
    summary = {"split": split, "count": count, "sampler": sampler, "steps": steps, "seed": seed,
               "dataset": cfg.data.dataset, "z": "posterior mean (mu)"}
    write_json(out / "manifest.json", summary)
    return summary


def _decoded_batch(decoded):
    """PyG batch view of decoded crystals (to re-encode or score them)."""
    from torch_geometric.data import Batch

    from genlowdim.crystal.lattice import lattice_from_params

    lattice = lattice_from_params(decoded.lengths, decoded.angles)
    batch = torch.repeat_interleave(torch.arange(len(decoded.num_atoms), device=lattice.device), decoded.num_atoms)
    return Batch(frac_coords=decoded.frac_coords, atom_types=decoded.atom_types, lattice=lattice,
                 lengths=decoded.lengths, angles=decoded.angles, num_atoms=decoded.num_atoms, batch=batch,
                 ptr=torch.cat([decoded.num_atoms.new_zeros(1), decoded.num_atoms.cumsum(0)]))


@torch.no_grad()
def _score_decoded(model, property_model, decoded) -> torch.Tensor:
    batch = _decoded_batch(decoded)
    if property_model is not None:
        return property_model.predict(batch)
    return model.predict_property(model.encode(batch, sample=False)[2])


def optimize_property(model, cfg: CrystalConfig, out_dir: str | Path, *, property_name: str | None = None,
                      num: int = 100, steps: int = 5000, decode_every: int = 555, lr: float = 1e-3,
                      sampler: str = "ald_fast", sampler_steps: int | None = None, seed: int = 0,
                      property_model=None) -> dict:
    """CDVAE's latent optimisation from ``num`` encoded test crystals; SR5/SR10/SR15 -> ``results.json``.

    A snapshot counts if it is structurally and compositionally valid; its property is predicted by
    ``property_model`` (else by re-encoding with CDVAE's own head). Each snapshot is written as extxyz."""
    from torch_geometric.data import Batch

    from genlowdim.crystal.io import write_extxyz
    from genlowdim.crystal.sampling import optimize_latents, success_rates
    from genlowdim.metrics.composition import compositional_validity
    from genlowdim.metrics.structure import structural_validity
    from genlowdim.runtime import write_json

    if cfg.data.dataset not in SR_THRESHOLDS:
        raise ValueError(f"no success-rate percentiles known for dataset {cfg.data.dataset!r}; "
                         f"known: {sorted(SR_THRESHOLDS)}")
    _check_property_name(cfg, property_name)
    out = Path(out_dir)
    device = next(model.parameters()).device
    batch = Batch.from_data_list(load_split(cfg, "test", num)).to(device)
    z0 = model.encode(batch, sample=False)[2].detach()
    gen = torch.Generator(device).manual_seed(seed)
    best = torch.full((z0.shape[0],), float("nan"), dtype=torch.float64)
    snapshots = []

    def on_snapshot(i, z):
        decoded = decode_latents_for(model, cfg, z, sampler, sampler_steps, gen)
        structures = decoded.to_structures()
        valid = torch.as_tensor(structural_validity(structures).per_item["valid"]
                                & compositional_validity(structures).per_item["valid"])
        prop = _score_decoded(model, property_model, decoded).double().cpu()
        prop = torch.where(valid, prop, torch.full_like(prop, float("nan")))
        best.copy_(torch.fmin(best, prop))
        write_extxyz(structures, out / f"snapshot_{i:05d}.extxyz", info={"property": prop.tolist()})
        snapshots.append({"step": i, "valid": float(valid.double().mean()), "mean_property": float(prop.nanmean())})

    optimize_latents(model, z0, steps=steps, decode_every=decode_every, lr=lr, on_snapshot=on_snapshot)
    names = ("SR5", "SR10", "SR15")
    result = success_rates(best, dict(zip(names, SR_THRESHOLDS[cfg.data.dataset])))
    result.update(num=int(z0.shape[0]), steps=steps, decode_every=decode_every, lr=lr, sampler=sampler,
                  thresholds=dict(zip(names, SR_THRESHOLDS[cfg.data.dataset])), snapshots=snapshots,
                  scored_by="property model" if property_model is not None else "CDVAE property head")
    write_json(out / "results.json", result)
    return result


def decode_latents_for(model, cfg, z, sampler, steps, generator):
    from genlowdim.crystal.sampling import decode_latents

    return decode_latents(model, z, cfg.sampling, sampler=sampler, steps=steps, generator=generator)


def _check_property_name(cfg: CrystalConfig, name: str | None) -> None:
    if name is None:
        return
    from genlowdim.crystal.registry import get_spec

    expected = get_spec(cfg.data.dataset).property
    if name != expected:
        raise ValueError(f"--property {name!r}: the checkpoint's dataset {cfg.data.dataset!r} has property "
                         f"{expected!r}")


def property_fn_from_model(property_model, batch_size: int = 256):
    """``fn(structures) -> list[float]``: a trained property predictor as the evaluation's ``property_fn``
    (CDVAE's ``wdist_prop``). Structures are preprocessed like the datasets (Niggli-reduced)."""
    from torch_geometric.data import Batch

    from genlowdim.crystal.data import CrystalDataset, LoadReport, record_from_structure

    device = next(property_model.parameters()).device

    @torch.no_grad()
    def fn(structures):
        records = [record_from_structure(s, f"s{i}") for i, s in enumerate(structures)]
        ds = CrystalDataset(records, LoadReport(source="structures", total=len(records)))
        out = []
        for i in range(0, len(ds), batch_size):
            batch = Batch.from_data_list([ds[j] for j in range(i, min(i + batch_size, len(ds)))]).to(device)
            out.extend(property_model.predict(batch).tolist())
        return out
    return fn
