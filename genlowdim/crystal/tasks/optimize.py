"""CDVAE's property optimisation in latent space and its success rates (SR5/SR10/SR15).

From ``num`` encoded test crystals, Adam moves z to minimise the property head's prediction; every
``decode_every`` steps the latents are decoded, and a decode counts when it is structurally and
compositionally valid. A starting crystal succeeds at SRp when its best valid decode's predicted property is at
most the dataset's p-th percentile (``DatasetSpec.sr_percentiles``, CDVAE's values).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.data import Batch

from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.config import CrystalConfig
from genlowdim.crystal.cdvae.protocols import DecodeSettings
from genlowdim.crystal.geometry.lattice import lattice_from_params
from genlowdim.crystal.cdvae.sampling import decode_latents
from genlowdim.crystal.cdvae.training import load_split
from genlowdim.crystal.latents import adam_in_ball, ball_radius, encode_posterior
from genlowdim.metrics.composition import compositional_validity
from genlowdim.metrics.structure import structural_validity
from genlowdim.runtime import write_json
from genlowdim.structures.io import write_extxyz
from genlowdim.structures.registry import DATASETS, get_spec

__all__ = ["optimize_property", "optimize_latents", "success_rates", "sr_thresholds"]

SR_NAMES = ("SR5", "SR10", "SR15")
RADIUS_QUANTILE = 0.99   # the ball constraint's radius: this quantile of ‖μ‖ over training crystals


def optimize_latents(model, z0, *, steps=5000, decode_every=555, lr=1e-3, on_snapshot=None,
                     radius: float | None = None):
    """CDVAE's property optimisation: Adam on z (B, latent) to *minimise* the property head's prediction.

    ``radius``: after every Adam step, a z outside the ball ‖z‖ ≤ radius is scaled back onto it (the
    ``ball`` constraint; None: unbounded, as CDVAE). After the updates with index i where
    i % decode_every == 0 and after the last one, calls ``on_snapshot(i, z.detach())`` (CDVAE: 5,000 steps,
    every 555 -> 11 snapshots). Returns the final z."""
    def snapshot(i: int, z: torch.Tensor) -> None:
        if on_snapshot is not None and (i % decode_every == 0 or i == steps - 1):
            on_snapshot(i, z.clone())

    return adam_in_ball(z0, model.predict_property, steps=steps, lr=lr, radius=radius, on_step=snapshot)


def latent_radius(model, cfg: CrystalConfig, quantile: float = RADIUS_QUANTILE, limit: int = 2000,
                  batch_size: int = 500) -> float:
    """The ``quantile`` of ‖μ‖ over the first ``limit`` training crystals: the ball the ``ball`` constraint
    keeps z in, where the decoder has seen latents of real crystals."""
    mu, _ = encode_posterior(model, load_split(cfg, "train", limit), batch_size)
    return ball_radius(mu, quantile)


def success_rates(best_values, thresholds: dict[str, float]) -> dict[str, float]:
    """Fraction of starting crystals whose best valid predicted property is ≤ each threshold.

    ``best_values``: (M,) floats, NaN where no snapshot was valid (counts as failure)."""
    values = torch.as_tensor(best_values, dtype=torch.float64)
    ok = torch.isfinite(values)
    return {name: float(((values <= thr) & ok).double().mean()) for name, thr in thresholds.items()}


def sr_thresholds(dataset: str) -> dict[str, float]:
    """{"SR5": p5, "SR10": p10, "SR15": p15} of a registered dataset; ValueError when none are known."""
    percentiles = DATASETS[dataset].sr_percentiles if dataset in DATASETS else None
    if percentiles is None:
        known = sorted(name for name, spec in DATASETS.items() if spec.sr_percentiles is not None)
        raise ValueError(f"no success-rate percentiles known for dataset {dataset!r}; known: {known}")
    return dict(zip(SR_NAMES, percentiles))


def _decoded_batch(decoded):
    """PyG batch view of decoded crystals (to re-encode or score them)."""
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


def check_property_name(cfg: CrystalConfig, name: str | None) -> None:
    if name is None:
        return
    expected = get_spec(cfg.data.dataset).property
    if name != expected:
        raise ValueError(f"--property {name!r}: the checkpoint's dataset {cfg.data.dataset!r} has property "
                         f"{expected!r}")


def optimize_property(model, cfg: CrystalConfig, out_dir: str | Path, *, property_name: str | None = None,
                      split: str = "test", num: int = 100, steps: int = 5000, decode_every: int = 555,
                      lr: float = 1e-3, seed: int = 0, property_model=None, protocol: DecodeSettings | None = None,
                      radius_quantile: float = RADIUS_QUANTILE) -> dict:
    """Latent optimisation from the first ``num`` crystals of ``split``; SR5/SR10/SR15 -> ``results.json``.

    Decodes use ``cfg.sampling`` (its default sampler and ``type_update``). ``protocol``
    (:class:`~genlowdim.crystal.cdvae.protocols.DecodeSettings`; default: CDVAE's choices on ``cfg.sampling``)
    decides the starting latents (``latent``: ``sample``, posterior samples as CDVAE's ``model.encode``, or
    ``mean``) and the constraint (``ball``: see :func:`latent_radius`). A
    snapshot counts if it is structurally and compositionally valid; its property is predicted by
    ``property_model`` (else by re-encoding with CDVAE's own head). Each snapshot is written as extxyz."""
    protocol = protocol or DecodeSettings("cdvae", "optimize", cfg.sampling.sampler, cfg.sampling.spec(),
                                          cfg.sampling.type_update, latent="sample", constraint="none")
    thresholds = sr_thresholds(cfg.data.dataset)
    check_property_name(cfg, property_name)
    out = Path(out_dir)
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    batch = Batch.from_data_list(load_split(cfg, split, num)).to(device)
    z0 = model.encode(batch, generator=gen, sample=protocol.latent == "sample")[2].detach()
    radius = latent_radius(model, cfg, radius_quantile) if protocol.constraint == "ball" else None
    best = torch.full((z0.shape[0],), float("nan"), dtype=torch.float64)
    snapshots = []

    def on_snapshot(i, z):
        decoded = decode_latents(model, z, cfg.sampling, generator=gen)
        structures = decoded.to_structures()
        valid = torch.as_tensor(structural_validity(structures).per_item["valid"]
                                & compositional_validity(structures).per_item["valid"])
        prop = _score_decoded(model, property_model, decoded).double().cpu()
        prop = torch.where(valid, prop, torch.full_like(prop, float("nan")))
        best.copy_(torch.fmin(best, prop))
        write_extxyz(structures, out / f"snapshot_{i:05d}.extxyz", info={"property": prop.tolist()})
        snapshots.append({"step": i, "valid": float(valid.double().mean()), "mean_property": float(prop.nanmean()),
                          "mean_latent_norm": float(z.norm(dim=-1).mean()),
                          "lattice_clamped": int(decoded.lattice_clamped.sum()),
                          "decoder_calls": decoded.decoder_calls})

    optimize_latents(model, z0, steps=steps, decode_every=decode_every, lr=lr, on_snapshot=on_snapshot,
                     radius=radius)
    result = success_rates(best, thresholds)
    result.update(num=int(z0.shape[0]), split=split, steps=steps, decode_every=decode_every, lr=lr,
                  radius=radius, radius_quantile=radius_quantile if radius is not None else None,
                  protocol=protocol.to_dict(), sampler=cfg.sampling.sampler,
                  sampler_spec=to_dict(cfg.sampling.spec()), thresholds=thresholds, snapshots=snapshots,
                  scored_by="property model" if property_model is not None else "CDVAE property head")
    write_json(out / "results.json", result)
    return result
