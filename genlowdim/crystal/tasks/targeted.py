"""Generation aimed at a property: rejection on a model's property head over prior draws of z.

``genlowdim sample --target "heat_ref<0.5"`` draws z ~ N(0, I), keeps the draws whose property head
(``predict_property`` of a :class:`~genlowdim.crystal.contract.LatentCrystalModel`; CDVAE's, eV/atom for
perov_5's ``heat_ref``) meets the target and decodes only those, so a targeted crystal costs the decoder
exactly what an unconditional one costs; CDVAE's head costs two small matrix products per draw. The draws are
exact samples of the prior restricted to the head's accepted region. When ``max_draws`` draws per crystal
yield too few accepted latents, the batch is completed with the draws closest to the target, and the count
that met it on the head is reported (``head_accepted``).

Targets: ``NAME<HIGH``, ``NAME>LOW`` or ``LOW<NAME<HIGH`` (``<=``/``>=`` read the same: the property is
continuous); NAME must be the property the checkpoint was trained on.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from genlowdim.crystal.latents import draw_latents, encode_means
from genlowdim.errors import UsageError
from genlowdim.structures.registry import DATASETS

__all__ = ["PropertyTarget", "Aim", "parse_target", "targeted_latents", "head_error", "property_unit",
           "score_samples", "check_with_predictor", "describe_aim", "PREDICTED_FILE"]

PREDICTED_FILE = "predicted_property.csv"
# the units of the registered datasets' property columns (heat_ref: eV/atom)
PROPERTY_UNITS = {column: unit for spec in DATASETS.values() for column, unit in spec.units.items()}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NAME = r"[A-Za-z_][\w.]*"


@dataclass(frozen=True)
class PropertyTarget:
    """low < property < high (either bound may be infinite)."""
    name: str
    low: float = -math.inf
    high: float = math.inf

    def distance(self, values: torch.Tensor) -> torch.Tensor:
        """How far each value lies outside (low, high); 0 inside. (M,) -> (M,)."""
        return (self.low - values).clamp_min(0) + (values - self.high).clamp_min(0)

    def met(self, values: torch.Tensor) -> torch.Tensor:
        return (values > self.low) & (values < self.high)

    def shrunk(self, margin: float) -> "PropertyTarget":
        """The target with each finite bound moved ``margin`` inwards (a stricter screen for the head)."""
        if margin == 0:
            return self
        low = self.low + margin if not math.isinf(self.low) else self.low
        high = self.high - margin if not math.isinf(self.high) else self.high
        if not low < high:
            raise UsageError(f"--target-margin {margin:g} leaves nothing of {self}")
        return PropertyTarget(self.name, low, high)

    def __str__(self) -> str:
        lo = "" if math.isinf(self.low) else f"{self.low:g}<"
        hi = "" if math.isinf(self.high) else f"<{self.high:g}"
        return f"{lo}{self.name}{hi}" if hi or lo else self.name


def parse_target(text: str, expected_name: str | None = None) -> PropertyTarget:
    """``heat_ref<0.5``, ``heat_ref>1.2``, ``0.2<heat_ref<0.5`` -> :class:`PropertyTarget`. UsageError (one
    line) for anything else, an empty range, or a name other than ``expected_name`` (when given)."""
    s = text.replace(" ", "").replace("<=", "<").replace(">=", ">")
    patterns = ((rf"({_NAME})<({_NUMBER})", lambda m: (m[1], -math.inf, float(m[2]))),
                (rf"({_NAME})>({_NUMBER})", lambda m: (m[1], float(m[2]), math.inf)),
                (rf"({_NUMBER})<({_NAME})<({_NUMBER})", lambda m: (m[2], float(m[1]), float(m[3]))),
                (rf"({_NUMBER})>({_NAME})>({_NUMBER})", lambda m: (m[2], float(m[3]), float(m[1]))))
    for pattern, read in patterns:
        m = re.fullmatch(pattern, s)
        if m:
            name, low, high = read(m)
            break
    else:
        raise UsageError(f"--target {text!r}: write NAME<VALUE, NAME>VALUE or LOW<NAME<HIGH, "
                         f"e.g. 'heat_ref<0.5'")
    if not low < high:
        raise UsageError(f"--target {text!r}: the range is empty ({low:g} is not below {high:g})")
    if expected_name is not None and name != expected_name:
        raise UsageError(f"--target {text!r}: this model predicts {expected_name!r}, not {name!r}")
    return PropertyTarget(name, low, high)


@torch.no_grad()
def targeted_latents(model, num: int, target: PropertyTarget, *, max_draws: int = 1000, chunk: int = 4096,
                     generator=None, pool=None) -> tuple[torch.Tensor, int, int]:
    """(z (num, latent), number of them that meet the target on the head, draws used).

    Draws z ~ N(0, I) (or, with ``pool``, a :class:`~genlowdim.crystal.latents.LatentPool`, from the aggregate
    posterior of encoded training crystals) in chunks from ``generator`` until ``num`` meet the target or
    ``num·max_draws`` draws are spent; accepted draws come first, in draw order, then the closest rejected."""
    like = next(model.parameters())
    budget = num * max_draws
    accepted, closest, closest_d, used = [], None, None, 0
    while sum(len(a) for a in accepted) < num and used < budget:
        n = min(chunk, budget - used)
        z = draw_latents(n, model.latent_dim, pool, generator, like)
        used += n
        d = target.distance(model.predict_property(z))
        accepted.append(z[d == 0])
        rest, rest_d = z[d > 0], d[d > 0]
        if closest is not None:
            rest, rest_d = torch.cat([closest, rest]), torch.cat([closest_d, rest_d])
        keep = torch.argsort(rest_d)[:num]
        closest, closest_d = rest[keep], rest_d[keep]
    z = torch.cat(accepted)[:num]
    met = len(z)
    if met < num:
        z = torch.cat([z, closest[:num - met]])
    return z, met, used


@dataclass(frozen=True, eq=False)
class Aim:
    """Generation aimed at ``target``: the property head screens ``target`` moved ``margin`` inwards, at most
    ``max_draws`` latents per crystal, drawn from N(0, I) or from ``pool`` (a
    :class:`~genlowdim.crystal.latents.LatentPool`); ``head``: the head's name in the manifest (the model's
    ``property_head``)."""
    target: PropertyTarget
    max_draws: int = 1000
    pool: object = None
    margin: float = 0.0
    head: str = "property head"

    @property
    def screen(self) -> PropertyTarget:
        return self.target.shrunk(self.margin)

    def settings(self) -> dict:
        """The entries of a run's settings."""
        source = "prior" if self.pool is None else f"posterior of {len(self.pool.mu)} training crystals"
        return {"target": str(self.target), "max_draws": self.max_draws, "target_margin": self.margin,
                "target_source": source}

    def sample(self, crystals, num: int, generator) -> tuple:
        """(decoded crystals, the batch's record) of a latent crystal model (``LatentCrystalModel``)."""
        z, met, draws = targeted_latents(crystals, num, self.screen, max_draws=self.max_draws, generator=generator,
                                         pool=self.pool)
        return crystals.decode(z, generator), {"head_accepted": met, "draws": draws}

    def manifest(self, infos: list[dict]) -> dict:
        """The manifest's entries from the finished batches' records."""
        source = "z ~ N(0, I)" if self.pool is None else "the training crystals' posterior"
        return {"target": str(self.target), "max_draws": self.max_draws, "target_margin": self.margin,
                "head_screen": str(self.screen), "method": f"rejection on the {self.head} over " + source,
                "head_accepted": sum(i.get("head_accepted", 0) for i in infos),
                "draws": sum(i.get("draws", 0) for i in infos)}


@torch.no_grad()
def head_error(model, items, batch_size: int = 256) -> dict:
    """The property head on the posterior means μ of labelled crystals ``items`` against their labels:
    ``{"num", "mean", "std", "mae"}`` of label − head (property units). Its std on val is the rule for
    ``--target-margin`` (docs/csp.md)."""
    mu = encode_means(model, items, batch_size).to(next(model.parameters()))
    head = model.predict_property(mu).double().view(-1).cpu()
    labels = torch.cat([d.y.view(-1) for d in items]).double()
    r = labels - head
    return {"num": len(r), "mean": float(r.mean()), "std": float(r.std(unbiased=False)),
            "mae": float(r.abs().mean())}


def property_unit(name: str) -> str:
    """The unit of a dataset's property column (``heat_ref``: eV/atom)."""
    return PROPERTY_UNITS.get(name, "the training labels' unit")


def score_samples(out_dir, target: PropertyTarget, property_fn, predictor: str) -> dict:
    """Each crystal of ``out_dir/samples.extxyz`` scored by a property predictor (``property_fn(structures)``),
    judged on ``target`` itself (no margin): :data:`PREDICTED_FILE` (id, the predicted property with its unit
    in the column name, whether it meets the target) and the manifest's entries on it."""
    import csv
    import io
    from pathlib import Path

    from genlowdim.runtime import atomic_write_text
    from genlowdim.structures.io import read_structures

    pairs = read_structures(Path(out_dir) / "samples.extxyz")
    values = torch.tensor(property_fn([s for _, s in pairs]) if pairs else [], dtype=torch.float64)
    met = target.met(values)
    unit = property_unit(target.name)
    text = io.StringIO()
    rows = csv.writer(text, lineterminator="\n")
    rows.writerow(["id", f"{target.name}_predicted [{unit}]", f"meets {target}"])
    rows.writerows([i, f"{v:.6g}", bool(m)] for (i, _), v, m in zip(pairs, values.tolist(), met.tolist()))
    atomic_write_text(Path(out_dir) / PREDICTED_FILE, text.getvalue())
    return {"predictor": predictor, "predictor_met": int(met.sum()), "property_unit": unit,
            "predicted_property": PREDICTED_FILE}


def check_with_predictor(out_dir, target: PropertyTarget, property_checkpoint: str, manifest: dict,
                         name: str | None = None) -> dict:
    """:func:`score_samples` with a property-predictor checkpoint (recorded as ``name``, default its path); its
    entries are added to ``manifest`` and ``out_dir/manifest.json``. Returns the updated manifest."""
    from pathlib import Path

    from genlowdim.crystal.cdvae.checkpoints import property_fn_from_checkpoint
    from genlowdim.runtime import write_json

    manifest = {**manifest, **score_samples(out_dir, target, property_fn_from_checkpoint(property_checkpoint),
                                            name or str(property_checkpoint))}
    write_json(Path(out_dir) / "manifest.json", manifest)
    return manifest


def describe_aim(manifest: dict, target: PropertyTarget) -> str:
    """The printed account of an aimed run: the head's screen and, where scored, the predictor's verdict."""
    line = (f"aimed at {manifest['target']} ({property_unit(target.name)}): {manifest['head_accepted']} of {manifest['count']} passed "
            f"the property head's screen {manifest['head_screen']} (margin {manifest['target_margin']:g}; "
            f"{manifest['draws']} latents drawn)")
    if "predictor_met" in manifest:
        line += (f"; {manifest['predictor_met']} of {manifest['count']} meet {manifest['target']} by the "
                 f"property predictor (each crystal's value in {manifest['predicted_property']})")
    return line
