"""Experiments of the MoLRG study: phase transition of subspace recovery, Jacobian ranks, memorisation.

Success criterion (Wang et al. 2024): ``||P̂_k − P*_k||_F < 0.2`` for every k after Hungarian matching.
Predicted boundary: N_k = d samples per subspace. Sweeps write their JSON after every finished cell
(``results.json``; a rerun skips finished cells) and a PNG heatmap at the end.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import torch

from genlowdim.config import to_dict
from genlowdim.core.jacobian import denoiser_jacobians, numerical_rank  # noqa: F401  (re-exported)
from genlowdim.core.samplers import get_sampler
from genlowdim.core.schedules import sigmas_karras
from genlowdim.metrics.subspace import distance_to_union, subspace_recovery
from genlowdim.runtime import library_versions, progress, write_json

from .clustering import spectral_init
from .config import SOLVERS, SweepConfig, TrainConfig
from .model import LowRankDenoiser
from .plots import plot_memorisation, plot_phase_transition
from .synthetic import SyntheticSet, make_synthetic
from .train import NoiseDistribution, build_model, train_lowrank, train_mlp



@contextlib.contextmanager
def torch_threads(num: int) -> Iterator[None]:
    """Temporarily limit intra-op threads: tiny linear algebra is >10× slower multi-threaded on a busy CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def noise_distribution(cfg: TrainConfig) -> NoiseDistribution:
    return NoiseDistribution(kind=cfg.noise, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max,
                             p_mean=cfg.p_mean, p_std=cfg.p_std)


def fit_subspaces(solver: str, data: SyntheticSet, train_cfg: TrainConfig, seed: int) -> torch.Tensor:
    """Estimated bases (K, n, d) of one solver on ``data.x`` (seeded by ``seed``)."""
    k, _, d = data.bases.shape
    gen = torch.Generator().manual_seed(seed)
    if solver == "spectral":
        return spectral_init(data.x, k, d, seed=seed, generator=gen).bases
    if solver == "trained":
        init = spectral_init(data.x, k, d, seed=seed, generator=gen).bases
        model = LowRankDenoiser.from_bases(init.to(torch.float32))
    elif solver == "random_start":
        model = LowRankDenoiser(k, data.bases.shape[1], d, generator=gen)
    else:
        raise ValueError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
    train_lowrank(model, data.x, steps=train_cfg.steps, batch_size=train_cfg.batch_size, lr=train_cfg.lr,
                  noise=noise_distribution(train_cfg), generator=gen)
    return model.bases.detach().to(torch.float64)


def cell_seed(d: int, per_subspace: int, seed: int) -> int:
    """Data seed of a sweep cell; shared by all solvers so their comparison is paired."""
    return 1_000_003 * d + 1009 * per_subspace + seed


def run_cell(cfg: SweepConfig, solver: str, d: int, per_subspace: int, seeds: int) -> dict:
    """Success rate and errors of ``solver`` at (d, N_k) over ``seeds`` data draws."""
    errors = []
    for s in range(seeds):
        gen = torch.Generator().manual_seed(cell_seed(d, per_subspace, s))
        data = make_synthetic(cfg.num_subspaces, cfg.ambient_dim, d, per_subspace, noise_std=cfg.noise_std,
                              generator=gen)
        train_cfg = cfg.random_start_train if solver == "random_start" else cfg.train
        est = fit_subspaces(solver, data, train_cfg, seed=s)
        errors.append(subspace_recovery(est, data.bases).subspace_error)
    success = [e < cfg.threshold for e in errors]
    return {"solver": solver, "d": d, "per_subspace": per_subspace, "ratio": per_subspace / d,
            "seeds": seeds, "success_rate": sum(success) / seeds, "errors": errors,
            "median_error": sorted(errors)[len(errors) // 2]}


def sweep_cells(cfg: SweepConfig) -> list[tuple[str, int, int, int]]:
    """(solver, d, N_k, seeds) of every cell to run, in order."""
    from genlowdim.config import ConfigError

    bad = sorted(set(cfg.solvers) - set(SOLVERS))
    if bad:
        raise ConfigError(f"solvers: unknown solver(s) {bad}; choose from {list(SOLVERS)}")
    for d in cfg.subspace_dims:
        if cfg.num_subspaces * d > cfg.ambient_dim:
            raise ConfigError(f"subspace_dims: K·d = {cfg.num_subspaces}·{d} > n = {cfg.ambient_dim}")
    cells = [(s, d, n, cfg.seeds) for s in cfg.solvers if s != "random_start"
             for d in cfg.subspace_dims for n in cfg.per_subspace]
    if "random_start" in cfg.solvers:
        cells += [("random_start", int(d), int(n), cfg.random_start_seeds) for d, n in cfg.random_start_points]
    return cells


# what a sweep cell computes, beyond its settings: bump when the code changes the numbers of a cell
# (2: fits driven by the training engine, batches drawn from its seeded per-epoch generator)
CELL_CODE_VERSION = 2


def cell_settings(cfg: SweepConfig, solver: str, d: int, per_subspace: int) -> dict:
    """Everything that defines the result of the cell (solver, d, N_k) of ``cfg``."""
    random_start = solver == "random_start"
    train = cfg.random_start_train if random_start else cfg.train
    return {"solver": solver, "d": d, "per_subspace": per_subspace, "ambient_dim": cfg.ambient_dim,
            "num_subspaces": cfg.num_subspaces, "noise_std": cfg.noise_std, "threshold": cfg.threshold,
            "seeds": cfg.random_start_seeds if random_start else cfg.seeds,
            "train": None if solver == "spectral" else to_dict(train), "code": CELL_CODE_VERSION}


def load_finished_cells(cfg: SweepConfig, path: Path, overwrite: bool = False) -> dict:
    """Finished cells of ``path`` (all of them computed with ``cfg``'s settings), or {} when ``overwrite``
    or there is no file; raises ``ConfigError`` naming the directory and what differs otherwise."""
    from genlowdim.resume import check_resumable

    if overwrite and path.is_file():
        path.unlink()
    if not path.is_file():
        return {}
    import json

    cells = json.loads(path.read_text()).get("cells", {})
    for key, cell in cells.items():
        settings = cell_settings(cfg, cell["solver"], cell["d"], cell["per_subspace"])
        check_resumable(path.parent, f"cell {key}", cell, settings)
    return cells


def run_phase_transition(cfg: SweepConfig, out_dir: str | Path, log: Callable[[str], None] = print,
                         overwrite: bool = False) -> dict:
    """Run (or resume) the sweep; writes ``results.json`` after each cell and ``phase_transition.png``.

    Finished cells are kept when their stored settings match ``cfg`` (else ``ConfigError``);
    ``overwrite`` starts afresh. Returns the results dict."""
    from genlowdim.resume import settings_record

    out = Path(out_dir)
    path = out / "results.json"
    cells = sweep_cells(cfg)   # checks the config before any work
    results = {"name": "molrg_phase_transition", "config": to_dict(cfg), "versions": library_versions(),
               "cells": load_finished_cells(cfg, path, overwrite)}
    with torch_threads(1):
        for solver, d, n, seeds in progress(cells, desc="phase transition"):
            key = f"{solver}/d={d}/N={n}"
            if key in results["cells"]:
                continue
            cell = run_cell(cfg, solver, d, n, seeds)
            results["cells"][key] = {**cell, **settings_record(cell_settings(cfg, solver, d, n))}
            write_json(path, results)
    write_json(path, results)
    plot_phase_transition(results, out / "phase_transition.png")
    log(format_table(results))
    return results


def format_table(results: dict) -> str:
    """Success rate per solver, d (rows) and N_k (columns) as plain text."""
    lines = []
    cells = list(results["cells"].values())
    for solver in SOLVERS:
        rows = [c for c in cells if c["solver"] == solver]
        if not rows:
            continue
        ns = sorted({c["per_subspace"] for c in rows})
        lines.append(f"{solver}: success rate (rows d, columns N_k)")
        lines.append("  d  " + " ".join(f"{n:>5d}" for n in ns))
        for d in sorted({c["d"] for c in rows}):
            by_n = {c["per_subspace"]: c["success_rate"] for c in rows if c["d"] == d}
            lines.append(f"{d:>3d}  " + " ".join(f"{by_n[n]:5.2f}" if n in by_n else "    -" for n in ns))
    return "\n".join(lines)


# ------------------------------------------------------------------------------- Jacobian ranks


def jacobian_ranks_along_trajectory(denoiser, x_init: torch.Tensor, sigmas: torch.Tensor,
                                    energy: float = 0.99) -> list[dict]:
    """Follow the Heun PF-ODE from ``x_init: (B, n)`` over ``sigmas`` (descending, ending in 0) and report,
    at each σ > 0 visited, the mean/min/max numerical rank of the denoiser Jacobian over the batch.
    """
    points = [(sigmas[0], x_init)]

    def record(info: dict) -> None:
        if float(info["sigma_next"]) > 0:
            points.append((info["sigma_next"], info["x"].detach()))

    with torch.no_grad():
        get_sampler("heun")(denoiser, x_init, sigmas, callback=record)
    rows = []
    for sigma, x in points:
        jac = denoiser_jacobians(denoiser, x, sigma).detach()
        ranks = [numerical_rank(torch.linalg.svdvals(j), energy) for j in jac]
        rows.append({"sigma": float(sigma), "mean_rank": sum(ranks) / len(ranks),
                     "min_rank": min(ranks), "max_rank": max(ranks)})
    return rows


# ----------------------------------------------------------------------------- memorisation


def sample_with(denoiser, num: int, dim: int, *, sampler: str = "heun", steps: int = 32,
                sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                generator: torch.Generator | None = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """Draw ``(num, dim)`` samples by running a core sampler on a Karras schedule from N(0, σ_max² I).

    ``device``: where x lives (the denoiser and ``generator`` must be on the same device)."""
    sigmas = sigmas_karras(steps, sigma_min, sigma_max, rho=rho).to(dtype=dtype, device=device)
    x = sigmas[0] * torch.randn(num, dim, generator=generator, dtype=dtype, device=device)
    with torch.no_grad():
        return get_sampler(sampler)(denoiser, x, sigmas, generator=generator)


def memorisation_stats(samples: torch.Tensor, train: torch.Tensor, bases: torch.Tensor,
                       copy_threshold: float = 0.1, subspace_threshold: float = 0.1) -> dict:
    """Relative distances of samples to the nearest training point and to the true union of subspaces.

    A sample is a *copy* when ``||x − x_nn|| / ||x_nn|| < copy_threshold``, *on the subspaces* when
    ``dist(x, ∪ span U_k) / ||x|| < subspace_threshold``; *generalised* = on the subspaces and not a copy.
    """
    samples = samples.to(torch.float64)
    train = train.to(torch.float64)
    dist = torch.cdist(samples, train)
    nn_dist, nn_idx = dist.min(dim=1)
    rel_nn = nn_dist / train[nn_idx].norm(dim=1).clamp_min(1e-12)
    rel_sub = distance_to_union(samples, bases.to(torch.float64)) / samples.norm(dim=1).clamp_min(1e-12)
    copy = rel_nn < copy_threshold
    on_sub = rel_sub < subspace_threshold
    return {"copy_fraction": float(copy.double().mean()), "on_subspace_fraction": float(on_sub.double().mean()),
            "generalised_fraction": float((on_sub & ~copy).double().mean()),
            "median_rel_distance_to_train": float(rel_nn.median()),
            "median_rel_distance_to_subspaces": float(rel_sub.median()),
            "copy_threshold": copy_threshold, "subspace_threshold": subspace_threshold,
            "num_samples": samples.shape[0], "num_train": train.shape[0]}


# ------------------------------------------------------------------------------ run metrics


def learned_bases(model, cfg, generator: torch.Generator | None = None, num_samples: int = 2000) -> torch.Tensor:
    """Subspaces a trained model represents, (K, n, d): the low-rank model's bases, or for a generic
    denoiser the spectral/PCA fit of ``num_samples`` of its samples (``cfg.sample`` sampler settings)."""
    if isinstance(model, LowRankDenoiser):
        return model.bases.detach().to(torch.float64)
    s = cfg.sample
    samples = sample_with(model, num_samples, cfg.data.ambient_dim, sampler=s.sampler, steps=s.steps,
                          sigma_min=s.sigma_min, sigma_max=s.sigma_max, rho=s.rho, generator=generator)
    return spectral_init(samples.to(torch.float64), cfg.data.num_subspaces, cfg.data.subspace_dim,
                         generator=generator).bases


def recovery_metrics(bases: torch.Tensor, data: SyntheticSet, assign_sigma: float = 0.1,
                     threshold: float = 0.2) -> dict:
    """Subspace error/angles after matching, and clustering accuracy of the training points assigned by
    the posterior ``argmax_k w_k(x_i)`` (uniform π) of the estimated mixture at σ = ``assign_sigma``."""
    from genlowdim.core.kernels import molrg_posterior_weights
    from genlowdim.metrics.subspace import clustering_accuracy

    rec = subspace_recovery(bases, data.bases)
    x = data.x.to(torch.float64)
    logw = torch.zeros(bases.shape[0], dtype=torch.float64)
    post = molrg_posterior_weights(x, bases.to(torch.float64), logw, assign_sigma, check=False)
    acc = clustering_accuracy(post.argmax(dim=1), data.labels)
    return {"subspace_error": rec.subspace_error, "max_principal_angle": rec.max_principal_angle,
            "subspace_errors": rec.errors, "principal_angles_max": rec.max_angles,
            "clustering_accuracy": acc, "success": rec.subspace_error < threshold,
            "params": {"threshold": threshold, "assign_sigma": assign_sigma, **rec.params}}


def memorisation_cell(cfg, d: int, ratio: float) -> dict:
    """Train the MLP denoiser on N_k = round(ratio·d) points per subspace and judge its samples."""
    from .model import mlp_denoiser

    per = max(1, round(ratio * d))
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * d + per)
    data = make_synthetic(cfg.num_subspaces, cfg.ambient_dim, d, per, generator=gen)
    m, t, s = cfg.model, cfg.train, cfg.sample
    model = mlp_denoiser(cfg.ambient_dim, m, gen)
    train_mlp(model, data.x.float(), steps=t.steps, batch_size=t.batch_size, lr=t.lr,
              noise=noise_distribution(t), generator=gen)
    samples = sample_with(model, cfg.num_samples, cfg.ambient_dim, sampler=s.sampler, steps=s.steps,
                          sigma_min=s.sigma_min, sigma_max=s.sigma_max, rho=s.rho, generator=gen)
    stats = memorisation_stats(samples, data.x, data.bases, cfg.copy_threshold, cfg.subspace_threshold)
    return {"d": d, "ratio": ratio, "per_subspace": per, **stats, "baselines": memorisation_baselines(cfg, d, ratio)}


def memorisation_baselines(cfg, d: int, ratio: float) -> dict:
    """The same statistics for the two extremes, on the same training set and sampler: the empirical
    optimal denoiser (pure memorisation) and the exact MoLRG denoiser (perfect generalisation)."""
    from .model import EmpiricalDenoiser

    per = max(1, round(ratio * d))
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * d + per)
    data = make_synthetic(cfg.num_subspaces, cfg.ambient_dim, d, per, generator=gen)
    s = cfg.sample
    out = {}
    for name, den in (("empirical", EmpiricalDenoiser(data.x)), ("exact", data.mixture)):
        xs = sample_with(den, cfg.num_samples, cfg.ambient_dim, sampler=s.sampler, steps=s.steps,
                         sigma_min=s.sigma_min, sigma_max=s.sigma_max, rho=s.rho,
                         generator=torch.Generator().manual_seed(cfg.seed), dtype=torch.float64)
        out[name] = memorisation_stats(xs, data.x, data.bases, cfg.copy_threshold, cfg.subspace_threshold)
    return out


def run_memorisation(cfg, out_dir: str | Path, log: Callable[[str], None] = print) -> dict:
    """Memorisation curve (copy / on-subspace / generalised fractions vs N_k/d) for each d; JSON + PNG."""
    out = Path(out_dir)
    path = out / "memorisation.json"
    results = {"name": "molrg_memorisation", "config": to_dict(cfg), "versions": library_versions(), "cells": {}}
    if path.is_file():
        import json

        old = json.loads(path.read_text())
        if old.get("config") == results["config"]:
            results["cells"] = old.get("cells", {})
    todo = [(d, r) for d in cfg.subspace_dims for r in cfg.ratios]
    with torch_threads(1):
        for d, r in progress(todo, desc="memorisation"):
            key = f"d={d}/ratio={r:g}"
            if key not in results["cells"]:
                results["cells"][key] = memorisation_cell(cfg, d, r)
            elif "baselines" not in results["cells"][key]:
                results["cells"][key]["baselines"] = memorisation_baselines(cfg, d, r)
            write_json(path, results)
    plot_memorisation(results, out / "memorisation.png")
    log("  d  N_k/d  N_k | MLP: copies  on-subspace  generalised | copies of empirical / exact denoiser")
    for c in results["cells"].values():
        b = c["baselines"]
        log(f"{c['d']:>3d} {c['ratio']:>6g} {c['per_subspace']:>4d} |      {c['copy_fraction']:.3f}   "
            f"{c['on_subspace_fraction']:.3f}        {c['generalised_fraction']:.3f}     | "
            f"{b['empirical']['copy_fraction']:.3f} / {b['exact']['copy_fraction']:.3f}")
    return results


def run_training(cfg, device: torch.device | str = "cpu", log=print) -> tuple[torch.nn.Module, dict, dict]:
    """Draw the data of ``cfg`` (a ``RunConfig``), fit the model, and measure subspace recovery.

    Returns ``(model, metrics, extra_state)``; ``extra_state`` holds the true bases and training set so
    that sampling can later be judged against them.
    """
    d = cfg.data
    gen = torch.Generator().manual_seed(cfg.train.seed)
    data = make_synthetic(d.num_subspaces, d.ambient_dim, d.subspace_dim, d.per_subspace,
                          noise_std=d.noise_std, orthogonal=d.orthogonal, generator=gen)
    init = None
    if cfg.model.kind == "lowrank" and cfg.model.init == "spectral":
        init = spectral_init(data.x, d.num_subspaces, d.subspace_dim, seed=cfg.train.seed, generator=gen).bases
    model = build_model(cfg, gen, init).to(device)
    x = data.x.to(device)
    t = cfg.train
    train_gen = torch.Generator(device=x.device).manual_seed(t.seed + 1)
    kwargs = dict(steps=t.steps, batch_size=t.batch_size, lr=t.lr, noise=noise_distribution(t), desc="train",
                  generator=train_gen)
    fit = train_lowrank if isinstance(model, LowRankDenoiser) else train_mlp
    history = fit(model, x, **kwargs)
    model = model.cpu()
    bases = learned_bases(model, cfg, gen)
    metrics = recovery_metrics(bases, data, cfg.assign_sigma)
    metrics.update(final_loss=history[-1] if history else None, train_steps=t.steps,
                   init_subspace_error=None if init is None else recovery_metrics(init, data, cfg.assign_sigma)
                   ["subspace_error"])
    log(f"subspace_error={metrics['subspace_error']:.4f} max_principal_angle="
        f"{metrics['max_principal_angle']:.4f} clustering_accuracy={metrics['clustering_accuracy']:.4f}")
    return model, metrics, {"true_bases": data.bases, "train_x": data.x, "train_labels": data.labels}
