"""Generation and reconstruction with a trained CDVAE, written to disk batch by batch.

Both run on :class:`~genlowdim.crystal.runs.BatchRun`: resumable into the same folder, only with the same
settings (weights, seed, sampler and its spec, counts, type update, device), and shared between ``torchrun``
processes with the output of one. ``protocol``: the record of :func:`genlowdim.crystal.cdvae.protocols.resolve`,
kept in the manifest and in the settings that a resumed run must match.
"""
from __future__ import annotations

import time
from pathlib import Path

from torch_geometric.data import Batch

from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.config import CrystalConfig
from genlowdim.crystal.cdvae.sampling import decode_latents, generate, reconstruct_batch
from genlowdim.crystal.decoded import batch_to_decoded
from genlowdim.crystal.cdvae.training import load_split
from genlowdim.crystal.runs import BatchRun, decode_totals, item_id, model_digest
from genlowdim.crystal.tasks.targeted import targeted_latents
from genlowdim.runtime import library_versions, write_json
from genlowdim.structures.io import write_extxyz

__all__ = ["sample_crystals", "reconstruct"]


def _sampler_settings(model, cfg: CrystalConfig, sampler: str, steps: int | None, type_update: str) -> dict:
    """What decides a decode besides the seed and the inputs."""
    device = next(model.parameters()).device
    return {"model": model_digest(model), "sampler": sampler, "sampler_spec": to_dict(cfg.sampling.spec(sampler)),
            "steps": steps, "type_update": type_update, "device": device.type}


def sample_crystals(model, cfg: CrystalConfig, num: int, out_dir: str | Path, *, batch_size: int = 500,
                    seed: int = 0, sampler: str | None = None, steps: int | None = None,
                    checkpoint: str | None = None, overwrite: bool = False, protocol: dict | None = None,
                    target=None, max_draws: int = 1000, target_pool=None, target_margin: float = 0.0) -> dict:
    """Generate ``num`` crystals into ``out_dir``: ``cif/<id>.cif``, ``samples.extxyz``, ``manifest.json``.

    ``target`` (:class:`~genlowdim.crystal.tasks.targeted.PropertyTarget`): decode only prior draws whose property
    head meets it (rejection, at most ``max_draws`` head evaluations per crystal; see
    :mod:`genlowdim.crystal.tasks.targeted`), the same decoder calls per crystal as unconditional generation;
    ``target_pool`` (a :class:`~genlowdim.crystal.latents.LatentPool`): draw from it instead of N(0, I);
    ``target_margin``: the head screens ``target`` moved this far inwards (property units).

    Finished batches (``batches/batch_k/done.json``) of the same settings are skipped on a rerun; other
    settings raise ``OutputConflictError`` unless ``overwrite`` (which first clears the folder's batches,
    CIFs and merged files). Returns the manifest (the first process's; the others return theirs unmerged)."""
    sampler = sampler or cfg.sampling.sampler
    settings = {"task": "sample", "num": num, "batch_size": batch_size, "seed": seed, "protocol": protocol,
                **_sampler_settings(model, cfg, sampler, steps, cfg.sampling.type_update)}
    screen = None if target is None else target.shrunk(target_margin)   # what the head must meet
    if target is not None:
        settings.update(target=str(target), max_draws=max_draws, target_margin=target_margin,
                        target_source="prior" if target_pool is None else f"posterior of {len(target_pool.mu)} "
                        f"training crystals")
    run = BatchRun.open(out_dir, settings, device=next(model.parameters()).device, overwrite=overwrite,
                        cleared=("manifest.json", "samples.extxyz"))
    writer = run.writer
    num_batches = -(-num // batch_size)
    for k in run.pending(num_batches, "sampling batches"):
        n = min(batch_size, num - k * batch_size)
        t0 = time.perf_counter()
        gen = run.generator(seed, k)
        info = {}
        if target is None:
            decoded = generate(model, n, cfg.sampling, sampler=sampler, steps=steps, generator=gen)
        else:
            z, met, draws = targeted_latents(model, n, screen, max_draws=max_draws, generator=gen,
                                             pool=target_pool)
            decoded = decode_latents(model, z, cfg.sampling, sampler=sampler, steps=steps, generator=gen)
            info = {"head_accepted": met, "draws": draws}
        ids = [f"gen_{k * batch_size + i:06d}" for i in range(n)]
        writer.write(k, decoded.to_structures(), ids,
                     {"seconds": time.perf_counter() - t0, "decoder_calls": decoded.decoder_calls,
                      "lattice_clamped": decoded.lattice_clamped.tolist(), **info})
        if run.world == 1:
            writer.merge(num_batches)
    run.barrier()
    manifest = {"num": num, "batch_size": batch_size, "seed": seed, "sampler": sampler, "steps": steps,
                "protocol": protocol, "checkpoint": str(checkpoint) if checkpoint else None,
                "sampling_config": to_dict(cfg.sampling), "settings": writer.settings,
                "settings_hash": writer.hash, "versions": library_versions(), "processes": run.world}
    if run.first:
        count, finished = writer.merge(num_batches)
        infos = writer.infos(finished)
        manifest.update(count=count, batches=finished, **decode_totals(infos))
        if target is not None:
            manifest.update(target=str(target), max_draws=max_draws, target_margin=target_margin,
                            head_screen=str(screen),
                            method="rejection on the CDVAE property head over "
                            + ("z ~ N(0, I)" if target_pool is None else "the training crystals' posterior"),
                            head_accepted=sum(i.get("head_accepted", 0) for i in infos),
                            draws=sum(i.get("draws", 0) for i in infos))
        write_json(writer.out / "manifest.json", manifest)
    run.barrier()
    return manifest


def reconstruct(model, cfg: CrystalConfig, split: str, out_dir: str | Path, *, num: int | None = None,
                batch_size: int = 500, seed: int = 0, sampler: str | None = None,
                steps: int | None = None, overwrite: bool = False, protocol: dict | None = None) -> dict:
    """Encode + decode the first ``num`` crystals of ``split``; writes ``truth.extxyz`` (first) and
    ``predictions.extxyz`` (grown batch by batch), same ids and order. Resumes like :func:`sample_crystals`.

    The latent is z = μ unless ``protocol["latent"] == "sample"`` (z = μ + σ·ε from batch k's generator,
    as CDVAE's ``model.encode`` reparameterises)."""
    sampler = sampler or cfg.sampling.sampler
    latent = (protocol or {}).get("latent", "mean")
    items = load_split(cfg, split, num)
    settings = {"task": "reconstruct", "data": to_dict(cfg.data), "split": split, "num": len(items),
                "batch_size": batch_size, "seed": seed, "latent": latent, "protocol": protocol,
                **_sampler_settings(model, cfg, sampler, steps, cfg.sampling.recon_type_update)}
    run = BatchRun.open(out_dir, settings, device=next(model.parameters()).device, overwrite=overwrite,
                        cleared=("manifest.json", "truth.extxyz", "predictions.extxyz"))
    writer = run.writer
    ids = [item_id(d, split, i) for i, d in enumerate(items)]
    if run.first:
        write_extxyz(batch_to_decoded(Batch.from_data_list(items)).to_structures(), writer.out / "truth.extxyz",
                     ids=ids)
    num_batches = -(-len(items) // batch_size)
    for k in run.pending(num_batches, "reconstructing batches"):
        chunk = slice(k * batch_size, (k + 1) * batch_size)
        batch = Batch.from_data_list(items[chunk]).to(run.device)
        decoded = reconstruct_batch(model, batch, cfg.sampling, sampler=sampler, steps=steps,
                                    generator=run.generator(seed, k), sample_latent=latent == "sample")
        writer.write(k, decoded.to_structures(), ids[chunk],
                     {"decoder_calls": decoded.decoder_calls, "lattice_clamped": decoded.lattice_clamped.tolist()})
    run.barrier()
    summary = {"split": split, "sampler": sampler, "steps": steps, "seed": seed, "protocol": protocol,
               "dataset": cfg.data.dataset, "latent": "posterior mean (mu)" if latent == "mean" else
               "posterior sample (mu + sigma * eps)", "settings": writer.settings, "settings_hash": writer.hash,
               "processes": run.world}
    if run.first:
        count, finished = writer.merge(num_batches, "predictions.extxyz")
        summary.update(count=count, **decode_totals(writer.infos(finished)))
        write_json(writer.out / "manifest.json", summary)
    run.barrier()
    return summary
