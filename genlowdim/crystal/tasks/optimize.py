"""Property optimisation in latent space and its success rates (SR5/SR10/SR15), CDVAE's benchmark, for any
model with the contract's latent hooks (:class:`~genlowdim.crystal.contract.LatentCrystalModel`).

From ``num`` encoded test crystals, Adam moves z to minimise the property head's prediction; every
``decode_every`` steps the latents are decoded, and a decode counts when it is structurally and
compositionally valid. A starting crystal succeeds at SRp when its best valid decode's predicted property is at
most the dataset's p-th percentile (``DatasetSpec.sr_percentiles``, CDVAE's values). Where the search starts
and what bounds it is the model's :meth:`latent_optimization` (:class:`~genlowdim.crystal.contract.
LatentOptimization`), resolved once by its family.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.data import Batch

from genlowdim.crystal.contract import LatentCrystalModel
from genlowdim.crystal.geometry.lattice import lattice_from_params
from genlowdim.crystal.latents import adam_in_ball, ball_radius, encode_posterior
from genlowdim.crystal.runs import model_device
from genlowdim.metrics.composition import compositional_validity
from genlowdim.metrics.structure import structural_validity
from genlowdim.runtime import write_json
from genlowdim.structures.io import write_extxyz
from genlowdim.structures.registry import DATASETS, get_spec

__all__ = ["optimize_property", "optimize_latents", "success_rates", "sr_thresholds", "check_property_name",
           "latent_radius"]

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


def latent_radius(crystals: LatentCrystalModel, quantile: float = RADIUS_QUANTILE, limit: int = 2000,
                  batch_size: int = 500) -> float:
    """The ``quantile`` of ‖μ‖ over the model's first ``limit`` training crystals: the ball the ``ball``
    constraint keeps z in, where the decoder has seen latents of real crystals."""
    mu, _ = encode_posterior(crystals, crystals.load_split("train", limit), batch_size)
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
def _score_decoded(crystals, property_model, decoded) -> torch.Tensor:
    """(B,) property of decoded crystals: the property model's, else the model's head on their re-encoded z."""
    batch = _decoded_batch(decoded)
    if property_model is not None:
        return property_model.predict(batch)
    return crystals.predict_property(crystals.encode(batch, sample=False)[2])


def check_property_name(dataset: str, name: str | None) -> None:
    """ValueError unless ``name`` (None: any) is the property of the registered dataset ``dataset``."""
    if name is None:
        return
    expected = get_spec(dataset).property
    if name != expected:
        raise ValueError(f"--property {name!r}: the checkpoint's dataset {dataset!r} has property "
                         f"{expected!r}")


def optimize_property(crystals: LatentCrystalModel, out_dir: str | Path, *, property_name: str | None = None,
                      split: str = "test", num: int = 100, steps: int = 5000, decode_every: int = 555,
                      lr: float = 1e-3, seed: int = 0, property_model=None,
                      radius_quantile: float = RADIUS_QUANTILE) -> dict:
    """Latent optimisation from the first ``num`` crystals of ``split`` of the model's dataset; SR5/SR10/SR15
    -> ``results.json``.

    ``crystals``: a :class:`~genlowdim.crystal.contract.LatentCrystalModel`; its ``latent_optimization()``
    decides the starting latents (``mean``: z = μ; ``sample``: a posterior draw, as CDVAE's ``model.encode``)
    and the constraint (``ball``: see :func:`latent_radius`), its ``decode`` the decode settings, its
    ``run_entries("optimize")`` further entries of the results (e.g. the protocol; the task's own keys win).
    A snapshot counts if it is structurally and compositionally valid; its property is predicted by
    ``property_model`` (else by the model's own head on the re-encoded decode). Each snapshot is written as
    extxyz."""
    search = crystals.latent_optimization()
    thresholds = sr_thresholds(crystals.dataset)
    check_property_name(crystals.dataset, property_name)
    out = Path(out_dir)
    gen = torch.Generator(model_device(crystals)).manual_seed(seed)
    batch = Batch.from_data_list(crystals.load_split(split, num)).to(model_device(crystals))
    z0 = crystals.encode(batch, generator=gen, sample=search.start == "sample")[2].detach()
    radius = latent_radius(crystals, radius_quantile) if search.constraint == "ball" else None
    best = torch.full((z0.shape[0],), float("nan"), dtype=torch.float64)
    snapshots = []

    def on_snapshot(i, z):
        decoded = crystals.decode(z, gen)
        structures = decoded.to_structures()
        valid = torch.as_tensor(structural_validity(structures).per_item["valid"]
                                & compositional_validity(structures).per_item["valid"])
        prop = _score_decoded(crystals, property_model, decoded).double().cpu()
        prop = torch.where(valid, prop, torch.full_like(prop, float("nan")))
        best.copy_(torch.fmin(best, prop))
        write_extxyz(structures, out / f"snapshot_{i:05d}.extxyz", info={"property": prop.tolist()})
        snapshots.append({"step": i, "valid": float(valid.double().mean()), "mean_property": float(prop.nanmean()),
                          "mean_latent_norm": float(z.norm(dim=-1).mean()),
                          "lattice_clamped": int(decoded.lattice_clamped.sum()),
                          "decoder_calls": decoded.decoder_calls})

    optimize_latents(crystals, z0, steps=steps, decode_every=decode_every, lr=lr, on_snapshot=on_snapshot,
                     radius=radius)
    result = success_rates(best, thresholds)
    result.update(num=int(z0.shape[0]), split=split, steps=steps, decode_every=decode_every, lr=lr,
                  radius=radius, radius_quantile=radius_quantile if radius is not None else None)
    result.update({k: v for k, v in crystals.run_entries("optimize")[1].items() if k not in result})
    result.update(thresholds=thresholds, snapshots=snapshots,
                  scored_by="property model" if property_model is not None else crystals.property_head)
    write_json(out / "results.json", result)
    return result
