"""Config dataclasses of the likelihood family (loaded strictly by ``genlowdim.config.load_config``).

A run config (``configs/likelihood/circle_r10.yaml``) has ``family: likelihood`` and the sections
``data``, ``model``, ``fit``, ``eval``; a sweep config (``configs/likelihood/sweep.yaml``) has a ``base``
run config plus a ``sweep`` section.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from genlowdim.config import check_fields


@dataclass(frozen=True)
class DataConfig:
    manifold: str = "circle"
    ambient_dim: int = 10            # D
    num_train: int = 200             # n
    embedding_seed: int = 0          # seed of the random orthogonal embedding
    sample_seed: int = 0             # seed of the training sample
    perturbation_std: float = 0.1    # σ̃ of the instance noise Ỹ = X + σ̃ε̃


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 1
    prior: Literal["uniform", "gaussian"] = "uniform"
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    sigma_init: float = 0.5
    sigma_floor: float = 0.0
    init_seed: int = 0


@dataclass(frozen=True)
class FitConfig:
    method: Literal["quadrature", "iw_prior", "iw_encoder", "elbo"] = "quadrature"
    num_nodes: int = 500             # quadrature nodes per latent axis
    rule: Literal["midpoint", "gauss_legendre"] = "midpoint"
    num_samples: int = 64            # M importance samples
    shared_draws: bool = True        # iw_prior: one set of M draws for the whole batch
    steps: int = 1000
    lr: float = 3e-3
    batch_size: int = 0              # 0: full batch
    seed: int = 1                    # perturbation noise and Monte Carlo draws
    restarts: int = 1                # initialisations (init_seed, init_seed+1, ...); keep the best objective

    def __post_init__(self) -> None:   # fit.steps and fit.restarts: check_run_config
        check_fields(self, num_nodes="positive", num_samples="positive", lr="positive", batch_size="non_negative")


@dataclass(frozen=True)
class EvalConfig:
    num_samples: int = 1000          # generated and fresh true samples for W1/MMD/PR
    k: int = 5                       # k of k-NN precision/recall
    seed: int = 2


@dataclass(frozen=True)
class DiffusionConfig:
    enabled: bool = False            # also train the diffusion baseline on the clean sample
    hidden: list[int] = field(default_factory=lambda: [128, 128, 128])
    steps: int = 2000
    lr: float = 2e-3
    batch_size: int = 256
    sigma_min: float = 0.002
    sigma_max: float = 3.0
    sample_steps: int = 40
    sampler: str = "heun"            # a core sampler name
    likelihood_steps: int = 40       # PF-ODE intervals for the held-out log-likelihood
    seed: int = 3

    def __post_init__(self) -> None:
        check_fields(self, steps="positive", lr="positive", batch_size="positive", sigma_min="positive",
                     sigma_max="positive", sample_steps="positive", likelihood_steps="positive")


@dataclass(frozen=True)
class RunConfig:
    family: str = "likelihood"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    compare_unperturbed: bool = True  # also fit σ̃ = 0 on the same data
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    heldout_points: int = 200         # fresh points, perturbed by σ̃, for held-out log-likelihoods


@dataclass(frozen=True)
class SweepSection:
    perturbation_stds: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4])
    ambient_dims: list[int] = field(default_factory=lambda: [2, 10, 50])
    sample_sizes: list[int] = field(default_factory=lambda: [50, 100, 200, 400, 800])
    n_sweep_perturbation_std: float = 0.1
    n_sweep_ambient_dim: int = 10
    repeats: int = 1                 # data seeds per setting (results averaged)


@dataclass(frozen=True)
class SweepConfig:
    family: str = "likelihood"
    base: RunConfig = field(default_factory=RunConfig)
    sweep: SweepSection = field(default_factory=SweepSection)


def check_run_config(cfg: RunConfig, where: str = "config") -> None:
    """Raise ValueError naming the key for settings that cannot work."""
    if cfg.family != "likelihood":
        raise ValueError(f"{where}: family must be 'likelihood', got {cfg.family!r}")
    from genlowdim.likelihood.manifolds import MANIFOLDS

    if cfg.data.manifold not in MANIFOLDS:
        raise ValueError(f"{where}: data.manifold: unknown manifold {cfg.data.manifold!r}; expected one of "
                         f"{list(MANIFOLDS)}")
    if cfg.data.perturbation_std < 0:
        raise ValueError(f"{where}: data.perturbation_std (σ̃) must be >= 0, got {cfg.data.perturbation_std}")
    if cfg.model.latent_dim > cfg.data.ambient_dim:
        raise ValueError(f"{where}: model.latent_dim={cfg.model.latent_dim} exceeds data.ambient_dim="
                         f"{cfg.data.ambient_dim}")
    if cfg.fit.method == "quadrature" and cfg.model.latent_dim > 2:
        raise ValueError(f"{where}: fit.method=quadrature needs model.latent_dim <= 2 "
                         f"(got {cfg.model.latent_dim}); use iw_prior or iw_encoder")
    if cfg.fit.restarts < 1:
        raise ValueError(f"{where}: fit.restarts must be >= 1, got {cfg.fit.restarts}")
    if cfg.data.num_train < 2 or cfg.fit.steps < 1 or cfg.eval.num_samples < cfg.eval.k + 1:
        raise ValueError(f"{where}: need data.num_train >= 2, fit.steps >= 1, eval.num_samples > eval.k")
