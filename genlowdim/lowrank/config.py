"""Typed configs of the lowrank family (strict YAML → frozen dataclasses via ``genlowdim.config``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from genlowdim.config import check_fields

SOLVERS = ("spectral", "trained", "random_start")   # the sweep's subspace solvers, in table/figure order


@dataclass(frozen=True)
class DataConfig:
    """MoLRG ground truth: K subspaces of dimension d in R^n, N_k training points each, noise std η."""

    num_subspaces: int = 2
    ambient_dim: int = 48
    subspace_dim: int = 4
    per_subspace: int = 40
    noise_std: float = 0.0
    orthogonal: bool = True

    def __post_init__(self) -> None:
        check_fields(self, num_subspaces="positive", ambient_dim="positive", subspace_dim="positive",
                     per_subspace="positive", noise_std="non_negative")


@dataclass(frozen=True)
class ModelConfig:
    """``kind: lowrank`` (the paper's network, soft/hard) or ``mlp`` (EDM-preconditioned MLP);
    ``init``: ``spectral`` (spectral clustering of |XXᵀ| + PCA) or ``random`` (Haar-random bases)."""

    kind: Literal["lowrank", "mlp"] = "lowrank"
    mode: Literal["soft", "hard"] = "soft"
    init: Literal["spectral", "random"] = "spectral"
    hidden: int = 256
    depth: int = 3
    sigma_data: float = 1.0
    fourier_scale: float = 1.0  # std of the random Fourier frequencies of the noise embedding

    def __post_init__(self) -> None:
        check_fields(self, hidden="positive", depth="positive", sigma_data="positive",
                     fourier_scale="non_negative")


@dataclass(frozen=True)
class TrainConfig:
    """Adam on core's DSM loss; σ log-uniform on [sigma_min, sigma_max] or EDM log-normal."""

    steps: int = 300
    batch_size: int = 256
    lr: float = 1e-2
    noise: Literal["loguniform", "lognormal"] = "loguniform"
    sigma_min: float = 0.05
    sigma_max: float = 2.0
    p_mean: float = -1.2
    p_std: float = 1.2
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, steps="non_negative", batch_size="positive", lr="positive", sigma_min="positive",
                     sigma_max="positive", p_std="positive")


@dataclass(frozen=True)
class SampleConfig:
    """Sampler defaults for ``genlowdim sample`` (Karras schedule σ_max → σ_min, ρ)."""

    sampler: str = "heun"
    steps: int = 32
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self) -> None:
        check_fields(self, steps="positive", sigma_min="positive", sigma_max="positive", rho="positive")


@dataclass(frozen=True)
class RunConfig:
    """One training run (``genlowdim train``)."""

    family: Literal["lowrank"]
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    assign_sigma: float = 0.1  # noise level of the posterior assignment used for clustering accuracy


@dataclass(frozen=True)
class SweepConfig:
    """Phase-transition sweep over subspace dimension d and samples per subspace N_k.

    ``solvers``: any of ``spectral`` (reference K-subspace solver), ``trained`` (low-rank denoiser
    initialised by it, then trained) and ``random_start`` (Adam from random bases, only at
    ``random_start_points`` [[d, N_k], ...] because it is slow and fails).
    """

    family: Literal["lowrank"]
    ambient_dim: int = 48
    num_subspaces: int = 2
    subspace_dims: list[int] = field(default_factory=lambda: [2, 4, 6, 8])
    per_subspace: list[int] = field(default_factory=lambda: list(range(1, 13)))
    noise_std: float = 0.0
    seeds: int = 10
    threshold: float = 0.2
    solvers: list[str] = field(default_factory=lambda: ["spectral", "trained", "random_start"])
    random_start_points: list[list[int]] = field(default_factory=lambda: [[4, 4], [4, 8], [4, 16]])
    random_start_seeds: int = 5
    train: TrainConfig = field(default_factory=TrainConfig)
    random_start_train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1500))


@dataclass(frozen=True)
class MemorisationConfig:
    """MLP denoiser trained on N_k = ratio·d points per subspace; samples vs training set and subspaces."""

    family: Literal["lowrank"]
    ambient_dim: int = 16
    num_subspaces: int = 2
    subspace_dims: list[int] = field(default_factory=lambda: [2, 4])
    ratios: list[float] = field(default_factory=lambda: [1, 4, 16, 64])
    num_samples: int = 500
    seed: int = 0
    copy_threshold: float = 0.1  # ||x − nearest training point|| / ||that point|| below this = a copy
    subspace_threshold: float = 0.1  # distance to the union / ||x|| below this = on the subspaces
    model: ModelConfig = field(default_factory=lambda: ModelConfig(kind="mlp", sigma_data=0.5))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, lr=3e-3, noise="lognormal"))
    sample: SampleConfig = field(default_factory=SampleConfig)


@dataclass(frozen=True)
class DigitsConfig:
    """Union-of-subspaces fit and Jacobian-rank analysis on scikit-learn's 8×8 digits."""

    family: Literal["lowrank"]
    subspace_dim: int = 6
    affinity_power: float = 8.0
    refine_iters: int = 30
    centre: bool = True
    seed: int = 0
    model: ModelConfig = field(default_factory=lambda: ModelConfig(kind="mlp", hidden=512, depth=3,
                                                                   sigma_data=0.5, fourier_scale=4.0))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3000, lr=1e-3, noise="lognormal"))
    num_trajectories: int = 8
    heun_steps: int = 18
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    energy: float = 0.99
