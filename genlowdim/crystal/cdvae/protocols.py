"""Named evaluation protocols: every crystal figure says which one made it.

``cdvae``      CDVAE's ``scripts/evaluate.py`` choices: annealed Langevin with 50 levels x 100 steps and
               step_lr 1e-4, types by argmax after every step, reconstruction from a *sampled* latent
               z = μ + σ·ε, and property optimisation as unbounded Adam on z.
``genlowdim``  this package's defaults: the checkpoint's ``ald_fast`` sampler (50 levels x 10 steps with a
               step that does not overshoot), argmax types for generation, the composition head's counts
               kept and assigned to sites by the decoder for reconstruction from z = μ, and latent
               optimisation kept inside the ball that holds the encoded training crystals (the one change
               to CDVAE's optimisation; see :mod:`genlowdim.crystal.tasks.optimize`).

Both draw generation's latents from the prior N(0, I) (``--latent-source posterior`` draws them around the
encoded training crystals instead).

A protocol sets defaults; any explicit command-line setting (``--sampler``, ``--levels``,
``--steps-per-level``, ``--step-lr``, ``--type-update``, ``--latent``, ``--constraint``, ``--latent-source``)
overrides one of them, and :func:`resolve` returns the config to decode with together with a record of every
setting actually used and which ones were overridden.

Step counts have one unit per flag: ``--steps-per-level`` is the Langevin steps at each of the model's σ
levels of an ALD sampler (``steps_each``), ``--levels`` the noise levels of a Karras-grid sampler
(``steps``). ``--steps`` is kept, deprecated, with its old meaning: the first for ALD samplers, the second
otherwise. Whichever of the three gave it, the record lists ``steps`` among the overridden settings and the
resolved count in ``sampler_spec`` (so a run written with ``--steps`` resumes under the new flag).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.config import CrystalConfig, SamplerSpec
from genlowdim.crystal.contract import CONSTRAINTS, START_LATENTS as LATENTS

TASKS = ("sample", "reconstruct", "optimize", "csp")
CDVAE_ALD = SamplerSpec(method="ald", steps_each=100, step_lr=1e-4)
SOURCES = ("prior", "posterior")   # where generation draws z: N(0, I), or around encoded training crystals


@dataclass(frozen=True)
class Protocol:
    """Defaults of one protocol. ``spec`` None: the checkpoint's own spec of ``sampler``;
    ``recon_type_update``/``type_update`` None: the checkpoint's own setting; ``source``: where generation
    draws z (:data:`SOURCES`)."""
    name: str
    sampler: str
    spec: SamplerSpec | None
    type_update: str | None
    recon_type_update: str | None
    latent: str
    constraint: str
    source: str = "prior"


PROTOCOLS = {
    "cdvae": Protocol("cdvae", "ald", CDVAE_ALD, "argmax", "argmax", latent="sample", constraint="none"),
    "genlowdim": Protocol("genlowdim", "ald_fast", None, None, None, latent="mean", constraint="ball"),
}
DEFAULT_PROTOCOL = "genlowdim"


@dataclass(frozen=True)
class DecodeSettings:
    """A protocol resolved once for one task: the sampler and its spec (step overrides applied), how types
    follow the decoder, the reconstruction latent (``mean``/``sample``: z = μ or μ + σ·ε; also where property
    optimisation starts), the optimisation constraint (``none``/``ball``) and generation's latent source
    (``prior``: z ~ N(0, I); ``posterior``: around encoded training crystals). ``to_dict()`` is the record
    written to manifests and to the settings a resumed run must match."""
    protocol: str
    task: str
    sampler: str
    spec: SamplerSpec
    type_update: str
    overridden: tuple[str, ...] = ()
    latent: str = "mean"
    constraint: str = "none"
    source: str = "prior"

    def to_dict(self) -> dict:
        record = {"protocol": self.protocol, "task": self.task, "sampler": self.sampler,
                  "sampler_spec": to_dict(self.spec), "type_update": self.type_update,
                  "overridden": list(self.overridden)}
        if self.task == "reconstruct":
            record["latent"] = self.latent
        if self.task == "optimize":
            record["constraint"] = self.constraint
        if self.task == "sample" and self.source != "prior":   # absent: z ~ N(0, I), as runs written before
            record["latent_source"] = self.source
        return record


def step_override(spec: SamplerSpec, name: str, *, levels: int | None = None,
                  steps_per_level: int | None = None, steps: int | None = None) -> dict:
    """The field of ``spec`` (sampler ``name``) that the step flags set, as ``replace`` keywords: ``steps_each``
    from ``steps_per_level`` (ALD samplers), ``steps`` from ``levels`` (the others); ``steps``, the deprecated
    flag, is the one that fits the sampler. ValueError (one line, naming the flag) for a flag the sampler has
    no use for, or for ``steps`` beside one of the new flags."""
    is_ald = spec.method == "ald"
    if steps is not None:
        if levels is not None or steps_per_level is not None:
            given = "--levels" if levels is not None else "--steps-per-level"
            raise ValueError(f"--steps is the deprecated form of --levels and --steps-per-level; give {given} "
                             f"alone")
        return {"steps_each": steps} if is_ald else {"steps": steps}
    if levels is not None and is_ald:
        raise ValueError(f"--levels {levels}: sampler {name!r} is an ALD sampler, which runs on the model's own "
                         f"noise levels; give --steps-per-level (Langevin steps at each level)")
    if steps_per_level is not None and not is_ald:
        raise ValueError(f"--steps-per-level {steps_per_level}: sampler {name!r} ({spec.method}) takes one step "
                         f"per noise level; give --levels (its number of noise levels)")
    if levels is not None:
        return {"steps": levels}
    return {} if steps_per_level is None else {"steps_each": steps_per_level}


def resolve(protocol: str, task: str, cfg: CrystalConfig, *, sampler: str | None = None,
            steps: int | None = None, step_lr: float | None = None, type_update: str | None = None,
            latent: str | None = None, constraint: str | None = None, levels: int | None = None,
            steps_per_level: int | None = None,
            source: str | None = None) -> tuple[CrystalConfig, DecodeSettings]:
    """(config to decode with, :class:`DecodeSettings`) for ``task`` under ``protocol``.

    The returned config's ``sampling.sampler`` is the sampler to use and its spec holds the step settings
    (``steps_per_level`` replaces ``steps_each`` of an ALD sampler, ``levels`` the ``steps`` of the others;
    ``steps``, deprecated, is whichever of the two fits the sampler: :func:`step_override`); the type update
    of the task is in ``sampling.type_update`` (generation, optimisation) or ``sampling.recon_type_update``
    (reconstruction). Raises ValueError naming the bad value."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    p = PROTOCOLS[protocol]
    step_count = next((v for v in (steps, levels, steps_per_level) if v is not None), None)
    overridden = [name for name, value in (("sampler", sampler), ("steps", step_count), ("step_lr", step_lr),
                                           ("type_update", type_update), ("latent", latent),
                                           ("constraint", constraint), ("latent_source", source))
                  if value is not None]
    name = sampler or p.sampler
    spec = p.spec if (p.spec is not None and sampler is None) else cfg.sampling.spec(name)
    spec = replace(spec, **step_override(spec, name, levels=levels, steps_per_level=steps_per_level, steps=steps))
    if step_lr is not None:
        if spec.method != "ald" or step_lr <= 0:
            raise ValueError(f"--step-lr {step_lr}: needs a positive value and an ALD sampler such as ald or "
                             f"ald_fast (got {name!r})")
        spec = replace(spec, step_lr=step_lr)
    field = "recon_type_update" if task == "reconstruct" else "type_update"
    # CSP decodes the formula's own types, placed by the decoder (genlowdim.crystal.tasks.csp)
    chosen_types = "composition" if task == "csp" else type_update or getattr(p, field) or getattr(cfg.sampling, field)
    latent = latent or p.latent
    constraint = constraint or p.constraint
    if latent not in LATENTS:
        raise ValueError(f"--latent {latent!r}: choose one of {', '.join(LATENTS)}")
    if constraint not in CONSTRAINTS:
        raise ValueError(f"--constraint {constraint!r}: choose one of {', '.join(CONSTRAINTS)}")
    source = source or p.source
    if source not in SOURCES:
        raise ValueError(f"--latent-source {source!r}: choose one of {', '.join(SOURCES)}")
    sampling = replace(cfg.sampling, sampler=name, samplers={**cfg.sampling.samplers, name: spec},
                       **{field: chosen_types})
    settings = DecodeSettings(protocol, task, name, spec, chosen_types, tuple(overridden), latent, constraint,
                              source)
    return replace(cfg, sampling=sampling), settings
