"""Real data: scikit-learn's 8×8 digits (1,797 images, 64 pixels, ships offline) as a union of subspaces.

Two analyses (Wang et al. 2024, real-data section, at toy scale):
* fit 10 subspaces without labels (spectral clustering of ``|XXᵀ|^p`` + PCA + K-subspaces) and report the
  clustering accuracy, next to the supervised reference (per-class PCA, nearest-subspace assignment);
* train a small diffusion denoiser (EDM-preconditioned MLP) and measure the numerical rank of its Jacobian
  along 18-step Heun trajectories σ 80 → 0.002 (ρ = 7): rank = smallest r with
  ``sqrt(Σ_{i≤r} s_i²) > 0.99 ||s||``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from genlowdim.config import to_dict
from genlowdim.core.schedules import sigmas_karras
from genlowdim.metrics.subspace import clustering_accuracy
from genlowdim.runtime import library_versions, write_json

from .analysis import jacobian_ranks_along_trajectory, noise_distribution, torch_threads
from .clustering import assign_to_subspaces, fit_bases, k_subspaces, spectral_init
from .config import DigitsConfig
from .model import MLPDenoiser, mlp_denoiser
from .plots import plot_rank_profile
from .train import train_mlp


def load_digits_tensor(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits pixels scaled to [0, 1], (1797, 64), and labels (1797,)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.as_tensor(x, dtype=dtype) / 16.0, torch.as_tensor(y, dtype=torch.long)


def subspace_clustering(x: torch.Tensor, labels: torch.Tensor, cfg: DigitsConfig) -> dict:
    """Unsupervised union-of-subspaces fit (centred, unit-norm rows) and the supervised reference."""
    z = x - x.mean(0) if cfg.centre else x
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    gen = torch.Generator().manual_seed(cfg.seed)
    spectral = spectral_init(z, 10, cfg.subspace_dim, seed=cfg.seed, power=cfg.affinity_power, generator=gen)
    refined = k_subspaces(z, spectral.bases, iters=cfg.refine_iters, generator=gen)
    supervised = fit_bases(z, labels, 10, cfg.subspace_dim, gen)
    return {"spectral_accuracy": clustering_accuracy(spectral.labels, labels),
            "refined_accuracy": clustering_accuracy(refined.labels, labels),
            "supervised_nearest_subspace_accuracy": clustering_accuracy(assign_to_subspaces(z, supervised), labels),
            "objective": refined.objective,
            "params": {"subspace_dim": cfg.subspace_dim, "affinity_power": cfg.affinity_power,
                       "refine_iters": cfg.refine_iters, "centre": cfg.centre, "seed": cfg.seed}}


def train_digits_denoiser(x: torch.Tensor, cfg: DigitsConfig, desc: str | None = "digits denoiser") -> MLPDenoiser:
    """EDM-preconditioned MLP trained on digits scaled to [-1, 1]; x: (N, 64) in [0, 1]."""
    gen = torch.Generator().manual_seed(cfg.seed)
    m, t = cfg.model, cfg.train
    model = mlp_denoiser(x.shape[1], m, gen)
    train_mlp(model, (2 * x - 1).float(), steps=t.steps, batch_size=t.batch_size, lr=t.lr,
              noise=noise_distribution(t), generator=gen, desc=desc)
    return model.eval()


def jacobian_rank_profile(model, cfg: DigitsConfig, dim: int = 64) -> list[dict]:
    """Numerical Jacobian rank vs σ along ``cfg.num_trajectories`` Heun trajectories from N(0, σ_max² I)."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    sigmas = sigmas_karras(cfg.heun_steps, cfg.sigma_min, cfg.sigma_max, rho=cfg.rho).float()
    x = sigmas[0] * torch.randn(cfg.num_trajectories, dim, generator=gen)
    return jacobian_ranks_along_trajectory(model, x, sigmas, energy=cfg.energy)


def run_digits(cfg: DigitsConfig, out_dir: str | Path, log: Callable[[str], None] = print) -> dict:
    """Both analyses; writes ``digits.json`` (after each part) and ``jacobian_rank.png``."""
    out = Path(out_dir)
    x, labels = load_digits_tensor()
    results = {"name": "digits_lowrank", "config": to_dict(cfg), "versions": library_versions()}
    with torch_threads(1):
        results["clustering"] = subspace_clustering(x, labels, cfg)
        write_json(out / "digits.json", results)
        c = results["clustering"]
        log(f"digits clustering accuracy: spectral {c['spectral_accuracy']:.3f}, + K-subspaces "
            f"{c['refined_accuracy']:.3f}, supervised nearest-subspace {c['supervised_nearest_subspace_accuracy']:.3f}")
        model = train_digits_denoiser(x, cfg)
        results["jacobian_rank"] = jacobian_rank_profile(model, cfg)
    write_json(out / "digits.json", results)
    plot_rank_profile(results["jacobian_rank"], out / "jacobian_rank.png")
    log("      sigma   mean rank  (min-max)")
    for r in results["jacobian_rank"]:
        log(f"{r['sigma']:>11.4f}   {r['mean_rank']:6.2f}    ({r['min_rank']}-{r['max_rank']})")
    return results
