"""Generation and reconstruction with a trained CDVAE, written to disk batch by batch.

``sample_crystals`` and ``reconstruct`` resume an interrupted run into the same folder (finished batches are
skipped; batch k's noise comes from a generator seeded with (seed, k), so the result equals one uninterrupted
run). They resume only output of the same settings (weights, seed, sampler and its spec, counts, type update,
device): anything else stops with :class:`~genlowdim.structures.batches.OutputConflictError` unless
``overwrite=True`` (see :mod:`genlowdim.structures.batches`).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from genlowdim.config import to_dict
from genlowdim.crystal.checkpoints import model_digest
from genlowdim.crystal.config import CrystalConfig
from genlowdim.crystal.sampling import batch_to_decoded, generate, reconstruct_batch
from genlowdim.crystal.training import load_split
from genlowdim.runtime import library_versions, progress, write_json
from genlowdim.structures.batches import BatchWriter
from genlowdim.structures.io import write_extxyz

__all__ = ["sample_crystals", "reconstruct"]


def _batch_generator(device, seed: int, k: int) -> torch.Generator:
    return torch.Generator(device).manual_seed(seed * 1_000_003 + k)


def _sampler_settings(model, cfg: CrystalConfig, sampler: str, steps: int | None, type_update: str) -> dict:
    """What decides a decode besides the seed and the inputs."""
    device = next(model.parameters()).device
    return {"model": model_digest(model), "sampler": sampler, "sampler_spec": to_dict(cfg.sampling.spec(sampler)),
            "steps": steps, "type_update": type_update, "device": device.type}


def sample_crystals(model, cfg: CrystalConfig, num: int, out_dir: str | Path, *, batch_size: int = 500,
                    seed: int = 0, sampler: str | None = None, steps: int | None = None,
                    checkpoint: str | None = None, overwrite: bool = False) -> dict:
    """Generate ``num`` crystals into ``out_dir``: ``cif/<id>.cif``, ``samples.extxyz``, ``manifest.json``.

    Finished batches (``batches/batch_k/done.json``) of the same settings are skipped on a rerun; other
    settings raise ``OutputConflictError`` unless ``overwrite`` (which first clears the folder's batches,
    CIFs and merged files). Returns the manifest."""
    sampler = sampler or cfg.sampling.sampler
    settings = {"task": "sample", "num": num, "batch_size": batch_size, "seed": seed,
                **_sampler_settings(model, cfg, sampler, steps, cfg.sampling.type_update)}
    writer = BatchWriter(out_dir, settings, overwrite=overwrite, cleared=("manifest.json", "samples.extxyz"))
    num_batches = -(-num // batch_size)
    device = next(model.parameters()).device
    for k in progress(range(num_batches), desc="sampling batches"):
        if writer.done(k):
            continue
        n = min(batch_size, num - k * batch_size)
        t0 = time.perf_counter()
        decoded = generate(model, n, cfg.sampling, sampler=sampler, steps=steps,
                           generator=_batch_generator(device, seed, k))
        ids = [f"gen_{k * batch_size + i:06d}" for i in range(n)]
        writer.write(k, decoded.to_structures(), ids,
                     {"seconds": time.perf_counter() - t0, "decoder_calls": decoded.decoder_calls})
        writer.merge(num_batches)
    count, finished = writer.merge(num_batches)
    manifest = {"num": num, "batch_size": batch_size, "seed": seed, "sampler": sampler, "steps": steps,
                "checkpoint": str(checkpoint) if checkpoint else None, "sampling_config": to_dict(cfg.sampling),
                "settings": writer.settings, "settings_hash": writer.hash, "versions": library_versions(),
                "count": count, "batches": finished}
    write_json(writer.out / "manifest.json", manifest)
    return manifest


def _item_id(item, split: str, index: int) -> str:
    mid = getattr(item, "material_id", None)
    return str(mid) if mid is not None else f"{split}_{index:06d}"


def reconstruct(model, cfg: CrystalConfig, split: str, out_dir: str | Path, *, num: int | None = None,
                batch_size: int = 500, seed: int = 0, sampler: str | None = None,
                steps: int | None = None, overwrite: bool = False) -> dict:
    """Encode + decode the first ``num`` crystals of ``split``; writes ``truth.extxyz`` (first) and
    ``predictions.extxyz`` (grown batch by batch), same ids and order. Resumes like :func:`sample_crystals`."""
    sampler = sampler or cfg.sampling.sampler
    items = load_split(cfg, split, num)
    settings = {"task": "reconstruct", "data": to_dict(cfg.data), "split": split, "num": len(items),
                "batch_size": batch_size, "seed": seed,
                **_sampler_settings(model, cfg, sampler, steps, cfg.sampling.recon_type_update)}
    writer = BatchWriter(out_dir, settings, overwrite=overwrite,
                         cleared=("manifest.json", "truth.extxyz", "predictions.extxyz"))
    ids = [_item_id(d, split, i) for i, d in enumerate(items)]
    write_extxyz(batch_to_decoded(Batch.from_data_list(items)).to_structures(), writer.out / "truth.extxyz",
                 ids=ids)
    device = next(model.parameters()).device
    num_batches = -(-len(items) // batch_size)
    for k in progress(range(num_batches), desc="reconstructing batches"):
        if writer.done(k):
            continue
        chunk = slice(k * batch_size, (k + 1) * batch_size)
        batch = Batch.from_data_list(items[chunk]).to(device)
        decoded = reconstruct_batch(model, batch, cfg.sampling, sampler=sampler, steps=steps,
                                    generator=_batch_generator(device, seed, k))
        writer.write(k, decoded.to_structures(), ids[chunk], {"decoder_calls": decoded.decoder_calls})
    count, _ = writer.merge(num_batches, "predictions.extxyz")
    summary = {"split": split, "count": count, "sampler": sampler, "steps": steps, "seed": seed,
               "dataset": cfg.data.dataset, "z": "posterior mean (mu)", "settings_hash": writer.hash}
    write_json(writer.out / "manifest.json", summary)
    return summary
