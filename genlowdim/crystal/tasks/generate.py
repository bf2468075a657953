"""Generation and reconstruction with a trained CDVAE, written to disk batch by batch.

``sample_crystals`` and ``reconstruct`` resume an interrupted run into the same folder (finished batches are
skipped; batch k's noise comes from a generator seeded with (seed, k), so the result equals one uninterrupted
run). They resume only output of the same settings (weights, seed, sampler and its spec, counts, type update,
device): anything else stops with :class:`~genlowdim.structures.batches.OutputConflictError` unless
``overwrite=True`` (see :mod:`genlowdim.structures.batches`).

Under ``torchrun --nproc_per_node N`` each process decodes the batches k with k % N == its rank (batch k's
generator does not depend on which process runs it) and the first process merges them after all are done, so
the output equals one process's. ``protocol``: the record of :func:`genlowdim.crystal.cdvae.protocols.resolve`,
kept in the manifest and in the settings that a resumed run must match.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.checkpoints import model_digest
from genlowdim.crystal.cdvae.config import CrystalConfig
from genlowdim.crystal.cdvae.sampling import batch_to_decoded, decode_latents, generate, reconstruct_batch
from genlowdim.crystal.tasks.targeted import targeted_latents
from genlowdim.crystal.cdvae.training import load_split
from genlowdim.train import init_distributed
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


def _bar_on_first(rank: int) -> dict:
    """Progress-bar options: only the first process draws one (the others would interleave theirs)."""
    return {} if rank == 0 else {"disable": True}


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def _writer(out_dir, settings: dict, overwrite: bool, cleared: tuple, rank: int, world: int) -> BatchWriter:
    """The output folder's writer; with several processes the first one checks or clears the folder."""
    if rank == 0:
        writer = BatchWriter(out_dir, settings, overwrite=overwrite, cleared=cleared)
    _barrier(world)
    if rank != 0:
        writer = BatchWriter(out_dir, settings, overwrite=False, cleared=cleared)
    return writer


def sample_crystals(model, cfg: CrystalConfig, num: int, out_dir: str | Path, *, batch_size: int = 500,
                    seed: int = 0, sampler: str | None = None, steps: int | None = None,
                    checkpoint: str | None = None, overwrite: bool = False, protocol: dict | None = None,
                    target=None, max_draws: int = 1000, target_pool=None, target_margin: float = 0.0) -> dict:
    """Generate ``num`` crystals into ``out_dir``: ``cif/<id>.cif``, ``samples.extxyz``, ``manifest.json``.

    ``target`` (:class:`~genlowdim.crystal.tasks.targeted.PropertyTarget`): decode only prior draws whose property
    head meets it (rejection, at most ``max_draws`` head evaluations per crystal; see
    :mod:`genlowdim.crystal.tasks.targeted`), the same decoder calls per crystal as unconditional generation;
    ``target_pool`` (a :class:`~genlowdim.crystal.tasks.csp.LatentPool`): draw from it instead of N(0, I);
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
    device = next(model.parameters()).device
    rank, world = init_distributed(device)
    writer = _writer(out_dir, settings, overwrite, ("manifest.json", "samples.extxyz"), rank, world)
    num_batches = -(-num // batch_size)
    for k in progress(range(num_batches), desc="sampling batches", **_bar_on_first(rank)):
        if k % world != rank or writer.done(k):
            continue
        n = min(batch_size, num - k * batch_size)
        t0 = time.perf_counter()
        gen = _batch_generator(device, seed, k)
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
        if world == 1:
            writer.merge(num_batches)
    _barrier(world)
    manifest = {"num": num, "batch_size": batch_size, "seed": seed, "sampler": sampler, "steps": steps,
                "protocol": protocol, "checkpoint": str(checkpoint) if checkpoint else None,
                "sampling_config": to_dict(cfg.sampling), "settings": writer.settings,
                "settings_hash": writer.hash, "versions": library_versions(), "processes": world}
    if rank == 0:
        count, finished = writer.merge(num_batches)
        infos = writer.infos(finished)
        manifest.update(count=count, batches=finished, **_totals(infos))
        if target is not None:
            manifest.update(target=str(target), max_draws=max_draws, target_margin=target_margin,
                            head_screen=str(screen),
                            method="rejection on the CDVAE property head over "
                            + ("z ~ N(0, I)" if target_pool is None else "the training crystals' posterior"),
                            head_accepted=sum(i.get("head_accepted", 0) for i in infos),
                            draws=sum(i.get("draws", 0) for i in infos))
        write_json(writer.out / "manifest.json", manifest)
    _barrier(world)
    return manifest


def _totals(infos: list[dict]) -> dict:
    """Summed over finished batches: crystals whose predicted lattice needed the decoder's clamp, and decoder
    evaluations (each evaluates a whole batch)."""
    return {"lattice_clamped": int(sum(sum(i.get("lattice_clamped", [])) for i in infos)),
            "decoder_calls": int(sum(i.get("decoder_calls", 0) for i in infos))}


def _item_id(item, split: str, index: int) -> str:
    mid = getattr(item, "material_id", None)
    return str(mid) if mid is not None else f"{split}_{index:06d}"


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
    device = next(model.parameters()).device
    rank, world = init_distributed(device)
    writer = _writer(out_dir, settings, overwrite, ("manifest.json", "truth.extxyz", "predictions.extxyz"),
                     rank, world)
    ids = [_item_id(d, split, i) for i, d in enumerate(items)]
    if rank == 0:
        write_extxyz(batch_to_decoded(Batch.from_data_list(items)).to_structures(), writer.out / "truth.extxyz",
                     ids=ids)
    num_batches = -(-len(items) // batch_size)
    for k in progress(range(num_batches), desc="reconstructing batches", **_bar_on_first(rank)):
        if k % world != rank or writer.done(k):
            continue
        chunk = slice(k * batch_size, (k + 1) * batch_size)
        batch = Batch.from_data_list(items[chunk]).to(device)
        decoded = reconstruct_batch(model, batch, cfg.sampling, sampler=sampler, steps=steps,
                                    generator=_batch_generator(device, seed, k), sample_latent=latent == "sample")
        writer.write(k, decoded.to_structures(), ids[chunk],
                     {"decoder_calls": decoded.decoder_calls, "lattice_clamped": decoded.lattice_clamped.tolist()})
    _barrier(world)
    summary = {"split": split, "sampler": sampler, "steps": steps, "seed": seed, "protocol": protocol,
               "dataset": cfg.data.dataset, "latent": "posterior mean (mu)" if latent == "mean" else
               "posterior sample (mu + sigma * eps)", "settings": writer.settings, "settings_hash": writer.hash,
               "processes": world}
    if rank == 0:
        count, finished = writer.merge(num_batches, "predictions.extxyz")
        summary.update(count=count, **_totals(writer.infos(finished)))
        write_json(writer.out / "manifest.json", summary)
    _barrier(world)
    return summary
