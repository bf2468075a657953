"""Configs of the crystal family (YAML -> frozen dataclasses, loaded strictly by ``genlowdim.config``).

One YAML file = one run. ``task: cdvae`` trains the CDVAE generative model, ``task: property`` the
property predictor (the same encoder + a regression head) used by the evaluation's ``wdist_prop``.
Defaults follow CDVAE (Xie et al. 2022) where they are settings of the method (noise levels, loss weights,
sampler); network sizes default to CPU-friendly e3nn sizes (a 3-layer stack of 64x0e+32x1o features, 12
neighbours within 6 Å; docs/cdvae.md gives their step times).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from genlowdim.config import apply_overrides, check_fields, from_dict, load_yaml, to_dict
from genlowdim.crystal.geometry.settings import GraphNetConfig
from genlowdim.train_settings import TrainSettings


@dataclass(frozen=True)
class DataConfig:
    """``dataset``: a registered name (``perov_5``), a directory of CDVAE-format ``{train,val,test}.csv[.gz]``
    or the name of such a directory under ``data_dir`` (``genlowdim data import`` writes them)."""
    dataset: str = "perov_5"
    data_dir: str | None = None          # where datasets are looked up (also --data-dir of genlowdim train)
    max_atoms: int | None = None         # None: the largest cell of a dataset folder, or the registered maximum
    niggli: bool = True
    train_limit: int | None = None       # first N training crystals (quick tests)
    val_limit: int | None = None         # first N validation crystals used by the val loss

    def __post_init__(self) -> None:
        check_fields(self, max_atoms="positive", train_limit="positive", val_limit="positive")


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 256
    head_hidden: int = 256
    encoder: GraphNetConfig = field(default_factory=GraphNetConfig)
    decoder: GraphNetConfig = field(default_factory=GraphNetConfig)
    sigma_begin: float = 10.0            # coordinate noise, Å (CDVAE)
    sigma_end: float = 0.01
    num_noise_levels: int = 50
    type_sigma_begin: float = 5.0        # atom-type noise (CDVAE)
    type_sigma_end: float = 0.01
    num_type_noise_levels: int = 50
    predict_property: bool = False
    teacher_forcing_max_epoch: int = 1500
    cost_natom: float = 1.0
    cost_lattice: float = 10.0
    cost_coord: float = 10.0
    cost_type: float = 1.0
    cost_kld: float = 0.01
    cost_composition: float = 1.0
    cost_property: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, latent_dim="positive", head_hidden="positive", sigma_begin="positive",
                     sigma_end="positive", num_noise_levels="positive", type_sigma_begin="positive",
                     type_sigma_end="positive", num_type_noise_levels="positive",
                     teacher_forcing_max_epoch="non_negative",
                     **{f"cost_{k}": "non_negative" for k in ("natom", "lattice", "coord", "type", "kld",
                                                              "composition", "property")})


@dataclass(frozen=True)
class SamplerSpec:
    """One named sampler: a core sampler (``method``) and its settings.

    ``ald``: CDVAE's annealed Langevin on the model's σ levels, ``steps_each`` steps per level with step size
    ``step_lr·(σ/σ_min)²``. Others (``pc``, ``em``, ``heun``, ``euler``, ``ddim``): a Karras grid of ``steps``
    levels between the model's σ_max and σ_min (then 0)."""
    method: str = "ald"
    steps_each: int = 100
    step_lr: float = 1e-4
    steps: int = 50

    def __post_init__(self) -> None:
        check_fields(self, steps_each="positive", step_lr="positive", steps="positive")


def default_samplers() -> dict[str, SamplerSpec]:
    """CDVAE's ALD (50 levels x 100 steps, 5,000 decoder calls), ``ald_fast``: 10 steps per level with
    step_lr/σ_min² = 0.25, which settles in ~4 steps per level without overshoot (500 calls), and
    ``ald_100``: 2 steps per level with CDVAE's own step (step_lr/σ_min² = 1), 100 calls, which matched
    ``ald_fast``'s validity and coverage on perov_5's val split (chosen there: docs/cdvae.md)."""
    return {"ald": SamplerSpec("ald", 100, 1e-4), "ald_fast": SamplerSpec("ald", 10, 2.5e-5),
            "ald_100": SamplerSpec("ald", 2, 1e-4)}


@dataclass(frozen=True)
class SamplingConfig:
    """Samplers of ``genlowdim sample``/``reconstruct``/``optimize``: ``sampler`` names the default one,
    ``samplers`` holds named specs (names not listed fall back to :func:`default_samplers`, then to a core
    sampler of that name with default settings)."""
    sampler: str = "ald"
    samplers: dict[str, SamplerSpec] = field(default_factory=default_samplers)
    # types after each accepted sampler step: "argmax" (CDVAE), "composition" (keep the composition head's
    # counts, the decoder assigns them to sites) or "fixed" (keep the initial types); see
    # genlowdim.crystal.cdvae.sampling. Generation (and optimisation decodes) use type_update, reconstruction
    # recon_type_update: decoding the posterior mean of a real crystal, the composition head is nearly exact
    # and argmax only loses it.
    type_update: Literal["argmax", "composition", "fixed"] = "argmax"
    recon_type_update: Literal["argmax", "composition", "fixed"] = "composition"

    def spec(self, name: str | None = None) -> SamplerSpec:
        """The spec of sampler ``name`` (default: ``self.sampler``)."""
        name = name or self.sampler
        return self.samplers.get(name) or default_samplers().get(name) or SamplerSpec(method=name)

    def with_spec(self, name: str, **changes) -> "SamplingConfig":
        """Copy with sampler ``name``'s spec changed (e.g. ``step_lr``)."""
        return replace(self, samplers={**self.samplers, name: replace(self.spec(name), **changes)})


# keys of the sampling section before named sampler specs: (old key) -> (sampler name, spec field)
_OLD_SAMPLING_KEYS = {"n_steps_each": ("ald", "steps_each"), "step_lr": ("ald", "step_lr"),
                      "fast_n_steps_each": ("ald_fast", "steps_each"), "fast_step_lr": ("ald_fast", "step_lr")}


def translate_old_keys(data: dict) -> dict:
    """A crystal config dict with the sampling section's old keys (``n_steps_each``, ``step_lr``,
    ``fast_n_steps_each``, ``fast_step_lr``) moved into ``sampling.samplers.{ald,ald_fast}``; other
    values are left as they are (a copy; the input is not changed)."""
    sampling = data.get("sampling")
    if not isinstance(sampling, dict) or not set(sampling) & set(_OLD_SAMPLING_KEYS):
        return data
    sampling = dict(sampling)
    samplers = {name: dict(spec) if isinstance(spec, dict) else spec
                for name, spec in (sampling.get("samplers") or to_dict(default_samplers())).items()}
    for old, (name, key) in _OLD_SAMPLING_KEYS.items():
        if old in sampling:
            samplers.setdefault(name, to_dict(default_samplers()[name]))[key] = sampling.pop(old)
    return {**data, "sampling": {**sampling, "samplers": samplers}}


@dataclass(frozen=True)
class CrystalConfig:
    family: Literal["crystal"]
    task: Literal["cdvae", "property"] = "cdvae"
    name: str = "cdvae"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainSettings = field(default_factory=TrainSettings)   # the engine's own settings
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


def load_crystal_config(path, overrides=None) -> CrystalConfig:
    """Read a crystal YAML with ``--set`` overrides (strict: unknown keys are errors naming the key; the
    sampling section's old keys are translated, see :func:`translate_old_keys`)."""
    data = translate_old_keys(apply_overrides(load_yaml(path), overrides))
    return from_dict(CrystalConfig, data, where=str(path))


def config_from_dict(data: dict) -> CrystalConfig:
    """Rebuild the config stored in a checkpoint (old sampling keys translated)."""
    return from_dict(CrystalConfig, translate_old_keys(data), where="checkpoint config")
