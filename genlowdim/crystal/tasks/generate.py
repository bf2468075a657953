"""Generation and reconstruction with a trained crystal model, written to disk batch by batch.

:func:`write_samples`, :func:`write_reconstructions` and :func:`reconstruct_split` take any
:class:`~genlowdim.crystal.contract.CrystalModel`;
:func:`sample_crystals` and :func:`reconstruct` are their CDVAE entry points (a model, its config and the
user's sampler choice). All run on :class:`~genlowdim.crystal.runs.BatchRun`: resumable into the same folder,
only with the same settings (weights, seed, sampler and its spec, counts, type update, device), and shared
between ``torchrun`` processes with the output of one. ``protocol``: the record
(``DecodeSettings.to_dict()``) kept in the manifest and in the settings that a resumed run must match.
"""
from __future__ import annotations

import time
from pathlib import Path

from torch_geometric.data import Batch

from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.config import CrystalConfig
from genlowdim.crystal.cdvae.contract import CDVAECrystals
from genlowdim.crystal.contract import CrystalModel
from genlowdim.crystal.decoded import batch_to_decoded
from genlowdim.crystal.runs import BatchRun, decode_totals, item_id, model_device
from genlowdim.crystal.tasks.targeted import Aim
from genlowdim.runtime import library_versions, write_json
from genlowdim.structures.io import write_extxyz

__all__ = ["sample_crystals", "reconstruct", "write_samples", "write_reconstructions", "reconstruct_split"]


def write_samples(crystals: CrystalModel, num: int, out_dir: str | Path, *, batch_size: int = 500,
                  seed: int = 0, overwrite: bool = False, protocol: dict | None = None, aim: Aim | None = None,
                  manifest: dict | None = None, settings: dict | None = None) -> dict:
    """Generate ``num`` crystals into ``out_dir``: ``cif/<id>.cif``, ``samples.extxyz``, ``manifest.json``.

    ``aim``: decode only latents screened by a property head (:class:`~genlowdim.crystal.tasks.targeted.Aim`;
    the model needs the latent hooks). ``protocol``/``settings``: the protocol record and further entries of
    the settings a resumed run must match (``settings`` may hold the protocol itself, as the model's
    ``run_entries("sample")`` does). ``manifest``: further entries of the manifest (not of the settings).
    Finished batches (``batches/batch_k/done.json``) of the same settings are skipped on a rerun; other
    settings raise ``OutputConflictError`` unless ``overwrite`` (which first clears the folder's batches,
    CIFs and merged files). Returns the manifest (the first process's; the others return theirs unmerged)."""
    settings = {"task": "sample", "num": num, "batch_size": batch_size, "seed": seed, "protocol": protocol,
                **(settings or {}), **crystals.record("sample"), **(aim.settings() if aim is not None else {})}
    run = BatchRun.open(out_dir, settings, device=model_device(crystals), overwrite=overwrite,
                        cleared=("manifest.json", "samples.extxyz"))
    writer = run.writer
    num_batches = -(-num // batch_size)
    for k in run.pending(num_batches, "sampling", items=num, unit="crystal"):
        n = min(batch_size, num - k * batch_size)
        t0 = time.perf_counter()
        gen = run.generator(seed, k)
        decoded, info = (crystals.sample(n, gen), {}) if aim is None else aim.sample(crystals, n, gen)
        ids = [f"gen_{k * batch_size + i:06d}" for i in range(n)]
        writer.write(k, decoded.to_structures(), ids,
                     {"seconds": time.perf_counter() - t0, "decoder_calls": decoded.decoder_calls,
                      "lattice_clamped": decoded.lattice_clamped.tolist(), **info})
        if run.world == 1:
            writer.merge(num_batches)
    run.barrier()
    manifest = {"num": num, "batch_size": batch_size, "seed": seed, **(manifest or {}), "settings": writer.settings,
                "settings_hash": writer.hash, "versions": library_versions(), "processes": run.world}
    if run.first:
        count, finished = writer.merge(num_batches)
        infos = writer.infos(finished)
        manifest.update(count=count, batches=finished, **decode_totals(infos))
        if aim is not None:
            manifest.update(aim.manifest(infos))
        write_json(writer.out / "manifest.json", manifest)
    run.barrier()
    return manifest


def write_reconstructions(crystals: CrystalModel, items: list, split: str, out_dir: str | Path, *,
                          batch_size: int = 500, seed: int = 0, overwrite: bool = False,
                          settings: dict | None = None, manifest: dict | None = None) -> dict:
    """Encode + decode crystals ``items`` (PyG ``Data`` of ``split``); writes ``truth.extxyz`` (first) and
    ``predictions.extxyz`` (grown batch by batch), same ids and order. Resumes like :func:`write_samples`.
    ``settings``/``manifest``: further entries of the settings a resumed run must match / of the manifest."""
    settings = {"task": "reconstruct", **(settings or {}), "split": split, "num": len(items),
                "batch_size": batch_size, "seed": seed, **crystals.record("reconstruct")}
    run = BatchRun.open(out_dir, settings, device=model_device(crystals), overwrite=overwrite,
                        cleared=("manifest.json", "truth.extxyz", "predictions.extxyz"))
    writer = run.writer
    ids = [item_id(d, split, i) for i, d in enumerate(items)]
    if run.first:
        write_extxyz(batch_to_decoded(Batch.from_data_list(items)).to_structures(), writer.out / "truth.extxyz",
                     ids=ids)
    num_batches = -(-len(items) // batch_size)
    for k in run.pending(num_batches, "reconstructing", items=len(items), unit="crystal"):
        chunk = slice(k * batch_size, (k + 1) * batch_size)
        batch = Batch.from_data_list(items[chunk]).to(run.device)
        decoded = crystals.reconstruct(batch, run.generator(seed, k))
        writer.write(k, decoded.to_structures(), ids[chunk],
                     {"decoder_calls": decoded.decoder_calls, "lattice_clamped": decoded.lattice_clamped.tolist()})
    run.barrier()
    summary = {"split": split, "seed": seed, **(manifest or {}), "settings": writer.settings,
               "settings_hash": writer.hash, "processes": run.world}
    if run.first:
        count, finished = writer.merge(num_batches, "predictions.extxyz")
        summary.update(count=count, **decode_totals(writer.infos(finished)))
        write_json(writer.out / "manifest.json", summary)
    run.barrier()
    return summary


def reconstruct_split(crystals: CrystalModel, split: str, out_dir: str | Path, *, num: int | None = None,
                      batch_size: int = 500, seed: int = 0, overwrite: bool = False) -> dict:
    """:func:`write_reconstructions` of the first ``num`` crystals (None: all) of ``split`` of the model's
    dataset, with the model's own entries of the settings and the manifest (``run_entries``)."""
    settings, manifest = crystals.run_entries("reconstruct")
    return write_reconstructions(crystals, crystals.load_split(split, num), split, out_dir, batch_size=batch_size,
                                 seed=seed, overwrite=overwrite, settings=settings, manifest=manifest)


def sample_crystals(model, cfg: CrystalConfig, num: int, out_dir: str | Path, *, batch_size: int = 500,
                    seed: int = 0, sampler: str | None = None, steps: int | None = None,
                    checkpoint: str | None = None, overwrite: bool = False, protocol=None,
                    target=None, max_draws: int = 1000, target_pool=None, target_margin: float = 0.0) -> dict:
    """:func:`write_samples` of a CDVAE with ``cfg.sampling`` (``sampler``/``steps`` override it); ``protocol``:
    the :class:`~genlowdim.crystal.cdvae.protocols.DecodeSettings` it was resolved from (recorded).

    ``target`` (:class:`~genlowdim.crystal.tasks.targeted.PropertyTarget`): decode only prior draws whose property
    head meets it (rejection, at most ``max_draws`` head evaluations per crystal; see
    :mod:`genlowdim.crystal.tasks.targeted`), the same decoder calls per crystal as unconditional generation;
    ``target_pool`` (a :class:`~genlowdim.crystal.latents.LatentPool`): draw from it instead of N(0, I);
    ``target_margin``: the head screens ``target`` moved this far inwards (property units)."""
    crystals = CDVAECrystals(model, cfg.sampling, sampler=sampler, steps=steps)
    record = protocol.to_dict() if protocol is not None else None
    aim = None if target is None else Aim(target, max_draws=max_draws, pool=target_pool, margin=target_margin,
                                          head=crystals.property_head)
    return write_samples(crystals, num, out_dir, batch_size=batch_size, seed=seed, overwrite=overwrite,
                         protocol=record, aim=aim,
                         manifest={"sampler": crystals.sampler_name, "steps": steps, "protocol": record,
                                   "checkpoint": str(checkpoint) if checkpoint else None,
                                   "sampling_config": to_dict(cfg.sampling)})


def reconstruct(model, cfg: CrystalConfig, split: str, out_dir: str | Path, *, num: int | None = None,
                batch_size: int = 500, seed: int = 0, sampler: str | None = None,
                steps: int | None = None, overwrite: bool = False, protocol=None) -> dict:
    """:func:`write_reconstructions` of a CDVAE on the first ``num`` crystals of ``split`` of its dataset.

    The latent is z = μ unless ``protocol.latent == "sample"`` (z = μ + σ·ε from batch k's generator,
    as CDVAE's ``model.encode`` reparameterises); ``protocol``:
    :class:`~genlowdim.crystal.cdvae.protocols.DecodeSettings`."""
    crystals = CDVAECrystals(model, cfg.sampling, sampler=sampler, steps=steps, config=cfg, protocol=protocol,
                             latent=protocol.latent if protocol is not None else "mean")
    return reconstruct_split(crystals, split, out_dir, num=num, batch_size=batch_size, seed=seed,
                             overwrite=overwrite)
