"""Experiments: fit the perturbed and unperturbed MLE on a toy, evaluate, and sweep σ̃ and n.

- ``run_experiment(cfg, out)``: the ``genlowdim train`` job. Fits σ̃ = 0 and the config's σ̃ on the same
  sample, evaluates both, writes ``metrics.json`` after each fit, a checkpoint and a PNG of samples.
- ``sigma_sweep`` / ``n_sweep``: W1 against σ̃ for several D, and W1 against n (log–log slope). Results
  are appended to a JSON file after each fit, each with the settings that define it and their hash; a rerun
  skips finished rows whose settings match and stops with ``ConfigError`` when they differ (``overwrite``
  starts afresh).

Metrics use noise-free samples g(Z) (the estimate of the singular target Q₀ = g₀#P_Z) against fresh true
samples: exact W1, unbiased MMD², mean distance to the true support, k-NN precision/recall. W1 of the
noisy samples g(Z) + σ̂ε and the W1 between two fresh true samples (the finite-sample floor) are reported
alongside.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from genlowdim.likelihood.config import RunConfig, SweepConfig, check_run_config
from genlowdim.likelihood.estimators import FitSettings, fit_perturbed_mle, log_likelihood, perturb
from genlowdim.likelihood.manifolds import make_manifold
from genlowdim.likelihood.model import LatentGenerator
from genlowdim.metrics.vectors import knn_precision_recall, mmd, wasserstein1


def build_toy(cfg: RunConfig):
    return make_manifold(cfg.data.manifold, cfg.data.ambient_dim, seed=cfg.data.embedding_seed)


def build_model(cfg: RunConfig, restart: int = 0) -> LatentGenerator:
    torch.manual_seed(cfg.model.init_seed + restart)  # nn.Linear init draws from the global generator only
    m = cfg.model
    return LatentGenerator(m.latent_dim, cfg.data.ambient_dim, m.hidden, m.prior, m.sigma_init, m.sigma_floor)


def fit_settings(cfg: RunConfig) -> FitSettings:
    f = cfg.fit
    return FitSettings(method=f.method, num_nodes=f.num_nodes, rule=f.rule, num_samples=f.num_samples,
                       shared_draws=f.shared_draws, steps=f.steps, lr=f.lr, batch_size=f.batch_size)


def evaluate_samples(toy, fake: torch.Tensor, real: torch.Tensor, k: int = 5) -> dict:
    """Metrics of generated ``fake: (N, D)`` against fresh true samples ``real: (M, D)``."""
    pr = knn_precision_recall(real, fake, k)
    return {"w1": wasserstein1(fake, real)["value"],
            "mmd2": mmd(fake, real)["value"],
            "support_distance": float(toy.distance_to_support(fake).double().mean()),
            "precision": pr["value"]["precision"], "recall": pr["value"]["recall"]}


def true_samples(toy, cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training sample ``(n, D)`` and a fresh evaluation sample ``(N_eval, D)`` (independent seeds)."""
    train = toy.sample(cfg.data.num_train, torch.Generator().manual_seed(cfg.data.sample_seed))
    fresh = toy.sample(cfg.eval.num_samples, torch.Generator().manual_seed(10_000 + cfg.eval.seed))
    return train, fresh


def fit_one(cfg: RunConfig, toy, train: torch.Tensor, fresh: torch.Tensor, perturbation_std: float,
            show_progress: bool = False, heldout: torch.Tensor | None = None) -> tuple[dict, LatentGenerator]:
    """Fit one model on ``train`` with instance noise σ̃ and evaluate it; returns (metrics, model).

    ``heldout: (m, D)``: perturbed fresh points whose mean log-likelihood (the fit's estimator) is reported.
    """
    objectives, best = [], None
    for restart in range(cfg.fit.restarts):  # same Ỹ for every restart (same fit seed)
        candidate = build_model(cfg, restart)
        fitted = fit_perturbed_mle(train, candidate, perturbation_std, fit_settings(cfg),
                                   torch.Generator().manual_seed(cfg.fit.seed), show_progress=show_progress)
        objectives.append(fitted.history[-1]["objective"])
        if best is None or objectives[-1] > best[1].history[-1]["objective"]:
            best = (candidate, fitted)
    model, result = best
    gen = torch.Generator().manual_seed(cfg.eval.seed)
    fake = model.sample(cfg.eval.num_samples, gen)
    noisy = model.sample(cfg.eval.num_samples, gen, with_noise=True)
    metrics = evaluate_samples(toy, fake, fresh, cfg.eval.k)
    metrics.update(perturbation_std=perturbation_std, sigma_hat=model.sigma.item(),
                   w1_with_noise=wasserstein1(noisy, fresh)["value"], fit_seconds=result.seconds,
                   final_objective=result.history[-1]["objective"], ess_mean=result.history[-1]["ess"],
                   restart_objectives=objectives)
    if heldout is not None:
        f = cfg.fit
        with torch.no_grad():
            est = log_likelihood(model, heldout, f.method, num_nodes=f.num_nodes, rule=f.rule,
                                 num_samples=f.num_samples, encoder=result.encoder,
                                 generator=torch.Generator().manual_seed(cfg.eval.seed))
        metrics["heldout_loglik"] = float(est.value.mean())
    return metrics, model


def run_diffusion(cfg: RunConfig, toy, train: torch.Tensor, fresh: torch.Tensor,
                  heldout: torch.Tensor | None) -> tuple[dict, torch.Tensor]:
    """Train the core-based diffusion baseline on the clean sample and evaluate it like the fits."""
    from genlowdim.likelihood.diffusion import diffusion_log_likelihood, sample_diffusion, train_diffusion

    d = cfg.diffusion
    torch.manual_seed(d.seed)
    denoiser, seconds = train_diffusion(train, d, torch.Generator().manual_seed(d.seed))
    fake = sample_diffusion(denoiser, cfg.eval.num_samples, train.shape[1], d,
                            torch.Generator().manual_seed(cfg.eval.seed))
    metrics = evaluate_samples(toy, fake, fresh, cfg.eval.k)
    metrics.update(fit_seconds=seconds, sampler=d.sampler, sample_steps=d.sample_steps)
    if heldout is not None and cfg.data.perturbation_std > 0:
        ll = diffusion_log_likelihood(denoiser, heldout, cfg.data.perturbation_std, d)
        metrics["heldout_loglik"] = float(ll.mean())
    return metrics, fake


def run_experiment(cfg: RunConfig, out: str | Path | None = None, show_progress: bool = True) -> dict:
    """Fit σ̃ = 0 (if ``cfg.compare_unperturbed``) and σ̃ = ``cfg.data.perturbation_std``; evaluate both.

    Writes ``out/metrics.json`` (nested per fit plus flat ``w1_unperturbed``, ``w1_perturbed``, ...) after
    each fit, ``out/model.pt`` (both generators) and ``out/samples.png``. Returns the metrics dict.
    """
    from genlowdim.config import to_dict
    from genlowdim.runtime import save_checkpoint, write_json

    check_run_config(cfg)
    toy = build_toy(cfg)
    train, fresh = true_samples(toy, cfg)
    reference = toy.sample(cfg.eval.num_samples, torch.Generator().manual_seed(20_000 + cfg.eval.seed))
    metrics: dict = {"config": to_dict(cfg), "sample_kind": "noise-free g(Z)",
                     "w1_true_vs_true": wasserstein1(reference, fresh)["value"]}
    heldout = perturb(fresh[:cfg.heldout_points], cfg.data.perturbation_std,
                      torch.Generator().manual_seed(30_000 + cfg.eval.seed))
    labels = (["unperturbed"] if cfg.compare_unperturbed else []) + ["perturbed"]
    models, samples = {}, {}
    for label in labels:
        std = 0.0 if label == "unperturbed" else cfg.data.perturbation_std
        metrics[label], models[label] = fit_one(cfg, toy, train, fresh, std, show_progress, heldout)
        samples[label] = models[label].sample(cfg.eval.num_samples, torch.Generator().manual_seed(cfg.eval.seed))
        for key in ("w1", "sigma_hat", "support_distance", "mmd2", "precision", "recall"):
            metrics[f"{key}_{label}"] = metrics[label][key]
        if out is not None:
            write_json(Path(out) / "metrics.json", metrics)
    if cfg.diffusion.enabled:
        metrics["diffusion"], samples["diffusion"] = run_diffusion(cfg, toy, train, fresh, heldout)
        for key in ("w1", "support_distance", "mmd2", "precision", "recall"):
            metrics[f"{key}_diffusion"] = metrics["diffusion"][key]
    metrics["heldout_perturbation_std"] = cfg.data.perturbation_std
    if out is not None:
        write_json(Path(out) / "metrics.json", metrics)
        save_checkpoint(Path(out) / "model.pt", {"family": "likelihood", "config": to_dict(cfg),
                        "models": {k: m.state_dict() for k, m in models.items()}})
        plot_samples(fresh, samples, Path(out) / "samples.png", title=f"{cfg.data.manifold} in "
                     f"R^{cfg.data.ambient_dim}, n={cfg.data.num_train}")
    return metrics


def principal_axes(x: torch.Tensor, num: int = 2) -> torch.Tensor:
    """Top ``num`` principal directions of ``x: (N, D)``: ``(D, num)``."""
    x = x.double()
    _, _, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    return vh[:num].T


def plot_samples(truth: torch.Tensor, fitted: dict[str, torch.Tensor], path: str | Path | None = None,
                 title: str = ""):
    """Scatter of each fitted sample set against the truth in the truth's first two principal coordinates;
    returns the figure (written to ``path`` when given)."""
    axes_dir, centre = principal_axes(truth), truth.double().mean(0)
    fig = _figure(figsize=(4.2 * len(fitted), 4.2))
    axes = fig.subplots(1, len(fitted), squeeze=False)
    for ax, (label, x) in zip(axes[0], fitted.items()):
        t = (truth.double() - centre) @ axes_dir
        f = (x.double() - centre) @ axes_dir
        ax.scatter(t[:, 0], t[:, 1], s=3, alpha=0.4, label="truth")
        ax.scatter(f[:, 0], f[:, 1], s=3, alpha=0.4, label=label)
        ax.set_aspect("equal")
        ax.set_title(label)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save_figure(fig, path)
    return fig
    return fig


def _figure(**kwargs):
    """A figure outside pyplot: no global backend is chosen; notebooks display the returned object."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save_figure(fig, path: str | Path | None) -> None:
    """Write ``fig`` as PNG to ``path`` atomically (nothing when ``path`` is None)."""
    import io

    from genlowdim.runtime import atomic_write_bytes

    if path is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        atomic_write_bytes(path, buf.getvalue())


def _with(cfg: RunConfig, **data_changes) -> RunConfig:
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data_changes))


def _load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.is_file() else []


# what a sweep row computes beyond its settings: bump when the code changes the numbers of a row
# (2: fits driven by the training engine, Monte Carlo draws from its seeded generator)
ROW_CODE_VERSION = 2


def row_settings(base: RunConfig, setting: dict, kind: str) -> dict:
    """Everything that defines a sweep row: the run config of the fit (minus sections a row does not use)."""
    from genlowdim.config import to_dict

    run = to_dict(_with(base, **setting))
    for unused in ("diffusion", "compare_unperturbed", "heldout_points"):
        run.pop(unused)
    return {"kind": kind, "run": run, "code": ROW_CODE_VERSION}


def _finished_rows(base: RunConfig, path: Path, kind: str, overwrite: bool) -> list[dict]:
    """Rows of ``path`` computed with ``base``'s settings ([] for ``overwrite``); ``ConfigError`` otherwise."""
    from genlowdim.resume import check_resumable

    if overwrite and path.is_file():
        path.unlink()
    rows = _load_rows(path)
    for row in rows:
        check_resumable(path.parent, f"{path.name} row {json.dumps(row['setting'])}", row,
                        row_settings(base, row["setting"], kind))
    return rows


def _run_rows(settings: list[dict], base: RunConfig, path: Path, kind: str, desc: str,
              overwrite: bool = False) -> list[dict]:
    """Fit every setting (dicts of DataConfig changes) not already in ``path``; append rows incrementally."""
    from genlowdim.config import to_dict
    from genlowdim.runtime import progress, write_json
    from genlowdim.resume import settings_record

    rows = _finished_rows(base, path, kind, overwrite)
    done = {json.dumps(r["setting"], sort_keys=True) for r in rows}
    for setting in progress(settings, desc=desc):
        if json.dumps(setting, sort_keys=True) in done:
            continue
        cfg = _with(base, **setting)
        check_run_config(cfg)
        toy = build_toy(cfg)
        train, fresh = true_samples(toy, cfg)
        metrics, _ = fit_one(cfg, toy, train, fresh, cfg.data.perturbation_std)
        rows.append({"setting": setting, **metrics, **settings_record(row_settings(base, setting, kind))})
        write_json(path, {"kind": kind, "base": to_dict(base), "rows": rows})
    return rows


def sigma_sweep(cfg: SweepConfig, out: str | Path, overwrite: bool = False) -> list[dict]:
    """W1 against σ̃ for each ambient dimension; writes ``sigma_sweep.json`` and ``sigma_sweep.png``."""
    s = cfg.sweep
    settings = [{"ambient_dim": d, "perturbation_std": p, "sample_seed": r}
                for d in s.ambient_dims for p in s.perturbation_stds for r in range(s.repeats)]
    rows = _run_rows(settings, cfg.base, Path(out) / "sigma_sweep.json", "sigma", "σ̃ sweep", overwrite)
    table = summarise(rows, ("ambient_dim", "perturbation_std"))
    plot_sigma_sweep(table, Path(out) / "sigma_sweep.png")
    print(format_table(table, ("ambient_dim", "perturbation_std")))
    return rows


def n_sweep(cfg: SweepConfig, out: str | Path, overwrite: bool = False) -> dict:
    """W1 against n at fixed σ̃ and D; fits log W1 = a + b log n; writes ``n_sweep.json``/``.png``."""
    s = cfg.sweep
    settings = [{"num_train": n, "perturbation_std": s.n_sweep_perturbation_std,
                 "ambient_dim": s.n_sweep_ambient_dim, "sample_seed": r}
                for n in s.sample_sizes for r in range(s.repeats)]
    rows = _run_rows(settings, cfg.base, Path(out) / "n_sweep.json", "n", "n sweep", overwrite)
    table = summarise(rows, ("num_train",))
    n = np.array([r["num_train"] for r in table], dtype=float)
    w1 = np.array([r["w1"] for r in table])
    slope, intercept = np.polyfit(np.log(n), np.log(w1), 1)
    fit = {"slope": float(slope), "intercept": float(intercept), "table": table}
    plot_n_sweep(table, slope, intercept, Path(out) / "n_sweep.png")
    print(format_table(table, ("num_train",)) + f"\nlog-log slope of W1 against n: {slope:.3f}")
    return fit


def summarise(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Mean of the metrics over repeats, grouped by the setting's ``keys``."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r["setting"][k] for k in keys), []).append(r)
    out = []
    for key, members in sorted(groups.items()):
        entry = dict(zip(keys, key))
        for metric in ("w1", "w1_with_noise", "sigma_hat", "support_distance", "mmd2", "precision", "recall"):
            entry[metric] = float(np.mean([m[metric] for m in members]))
        entry["repeats"] = len(members)
        out.append(entry)
    return out


def format_table(table: list[dict], keys: tuple[str, ...]) -> str:
    cols = list(keys) + ["w1", "w1_with_noise", "sigma_hat", "support_distance", "precision", "recall"]
    lines = [" | ".join(f"{c:>16}" for c in cols)]
    for row in table:
        lines.append(" | ".join(f"{row[c]:>16.4g}" if isinstance(row[c], float) else f"{row[c]:>16}"
                                for c in cols))
    return "\n".join(lines)


def plot_sigma_sweep(table: list[dict], path: Path | None = None):
    """W1 against σ̃, one line per D (rows of :func:`summarise`); returns the figure."""
    fig = _figure(figsize=(5, 3.6))
    ax = fig.subplots()
    for dim in sorted({r["ambient_dim"] for r in table}):
        rows = [r for r in table if r["ambient_dim"] == dim]
        ax.plot([r["perturbation_std"] for r in rows], [r["w1"] for r in rows], "o-", label=f"D = {dim}")
    ax.set_xlabel("perturbation σ̃")
    ax.set_ylabel("W1(g#P_Z, Q₀)")
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)
    return fig


def plot_n_sweep(table: list[dict], slope: float, intercept: float, path: Path | None = None):
    """W1 against n on log–log axes with the fitted line log W1 = intercept + slope log n; returns the figure."""
    n = np.array([r["num_train"] for r in table], dtype=float)
    fig = _figure(figsize=(5, 3.6))
    ax = fig.subplots()
    ax.loglog(n, [r["w1"] for r in table], "o", label="W1")
    ax.loglog(n, np.exp(intercept) * n**slope, "-", label=f"fit: slope {slope:.2f}")
    ax.set_xlabel("n")
    ax.set_ylabel("W1")
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)
    return fig
