"""Configs of the crystal family (YAML -> frozen dataclasses, loaded strictly by ``genlowdim.config``).

One YAML file = one run. ``task: cdvae`` trains the CDVAE generative model, ``task: property`` the
property predictor (the same encoder + a regression head) used by the evaluation's ``wdist_prop``.
Defaults follow CDVAE (Xie et al. 2022) where they are settings of the method (noise levels, loss weights,
sampler); network sizes default to the CPU-friendly e3nn sizes of REFERENCE.md §4.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from genlowdim.train import TrainSettings


@dataclass(frozen=True)
class DataConfig:
    """``dataset``: a registered name (``perov_5``) or a directory of CDVAE-format ``{train,val,test}.csv[.gz]``."""
    dataset: str = "perov_5"
    max_atoms: int | None = None         # None: the dataset's registered maximum
    niggli: bool = True
    train_limit: int | None = None       # first N training crystals (quick tests)
    val_limit: int | None = None         # first N validation crystals used by the val loss


@dataclass(frozen=True)
class GraphNetConfig:
    """An e3nn message-passing stack on the periodic radius graph (REFERENCE.md §4 for the costs)."""
    num_layers: int = 3
    num_scalars: int = 64
    num_vectors: int = 32
    num_l2: int = 0                      # > 0 adds l = 2 hidden features (about 4x dearer)
    lmax_sh: int = 1                     # spherical-harmonic degree of the edge directions
    cutoff: float = 6.0                  # Å
    max_neighbors: int | None = 12
    num_basis: int = 8
    radial_hidden: int = 64
    avg_num_neighbors: float = 12.0
    readout_dim: int | None = None       # encoder only: per-atom readout width before pooling (None: num_scalars)


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


@dataclass(frozen=True)
class SamplingConfig:
    """Default sampler of ``genlowdim sample`` (CDVAE's annealed Langevin, 50 levels x 100 steps)."""
    sampler: str = "ald"
    n_steps_each: int = 100
    step_lr: float = 1e-4
    fast_n_steps_each: int = 10          # ``--sampler ald_fast``: same levels, fewer steps per level
    fast_step_lr: float = 2.5e-5         # step_lr/σ_min² = 0.25: settles in ~4 steps per level, no overshoot
    # types after each decoder call: "argmax" (CDVAE), "composition" (keep the composition head's counts, the
    # decoder assigns them to sites) or "fixed" (keep the initial types); see genlowdim.crystal.sampling.
    # Generation (and optimisation decodes) use type_update, reconstruction recon_type_update: decoding the
    # posterior mean of a real crystal, the composition head is nearly exact and argmax only loses it.
    type_update: Literal["argmax", "composition", "fixed"] = "argmax"
    recon_type_update: Literal["argmax", "composition", "fixed"] = "composition"


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
    """Read a crystal YAML with ``--set`` overrides (strict: unknown keys are errors naming the key)."""
    from genlowdim.config import load_config

    return load_config(CrystalConfig, path, overrides)


def config_from_dict(data: dict) -> CrystalConfig:
    """Rebuild the config stored in a checkpoint."""
    from genlowdim.config import from_dict

    return from_dict(CrystalConfig, data, where="checkpoint config")
