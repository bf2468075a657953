"""Figures of the lowrank experiments, drawn on ``matplotlib.figure.Figure`` objects outside pyplot: no global
backend is chosen, PNGs are written headless, and a notebook displays the returned figure itself."""
from __future__ import annotations

from pathlib import Path

from .config import SOLVERS


def new_figure(**kwargs):
    """A ``matplotlib.figure.Figure`` outside pyplot: no global backend is chosen, PNGs are written headless
    and a notebook displays the same object."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_png(fig, path: str | Path | None, **kwargs) -> None:
    """Write ``fig`` to ``path`` (parents created) unless ``path`` is None."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, **kwargs)


def plot_phase_transition(results: dict, path: str | Path | None = None):
    """One heatmap panel per solver (success rate over N_k × d) with the predicted boundary N_k = d;
    returns the figure (written to ``path`` when given)."""
    import numpy as np

    cells = list(results["cells"].values())
    solvers = [s for s in SOLVERS if any(c["solver"] == s for c in cells)]
    fig = new_figure(figsize=(4.2 * len(solvers), 3.6))
    axes = fig.subplots(1, len(solvers), squeeze=False)
    for ax, solver in zip(axes[0], solvers):
        mine = [c for c in cells if c["solver"] == solver]
        ds = sorted({c["d"] for c in mine})
        ns = sorted({c["per_subspace"] for c in mine})
        grid = np.full((len(ds), len(ns)), np.nan)
        for c in mine:
            grid[ds.index(c["d"]), ns.index(c["per_subspace"])] = c["success_rate"]
        im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
        # predicted boundary N_k = d as a staircase between the columns N_k < d and N_k >= d
        edge = [sum(n < d for n in ns) - 0.5 for d in ds]
        xs = [e for e in edge for _ in range(2)]
        ys = [y for i in range(len(ds)) for y in (i - 0.5, i + 0.5)]
        ax.plot(xs, ys, color="r", ls="--", lw=1.5, label="N_k = d")
        ax.set_xticks(range(len(ns)), [str(n) for n in ns])
        ax.set_yticks(range(len(ds)), [str(d) for d in ds])
        ax.set_xlabel("N_k (training samples per subspace)")
        ax.set_ylabel("d")
        ax.set_title(solver)
        ax.legend(loc="lower right", fontsize=7)
    fig.colorbar(im, ax=axes[0].tolist(), label="success rate")
    save_png(fig, path, bbox_inches="tight")
    return fig


def plot_memorisation(results: dict, path: str | Path | None = None):
    """Copy and generalised fractions against N_k/d, one line per d (curves should collapse); returns the
    figure (written to ``path`` when given)."""
    cells = list(results["cells"].values())
    fig = new_figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for d in sorted({c["d"] for c in cells}):
        rows = sorted((c for c in cells if c["d"] == d), key=lambda c: c["ratio"])
        ratios = [c["ratio"] for c in rows]
        ax.plot(ratios, [c["generalised_fraction"] for c in rows], "o-", label=f"generalised, d={d}")
        ax.plot(ratios, [c["copy_fraction"] for c in rows], "x--", label=f"copies, d={d}")
    return _finish(fig, ax, path, "N_k / d", "fraction of samples", base=2)


def plot_rank_profile(rows: list[dict], path: str | Path | None = None, dim: int = 64):
    """Numerical Jacobian rank against σ (mean and min–max band); returns the figure (written to ``path``
    when given)."""
    sig = [r["sigma"] for r in rows]
    fig = new_figure(figsize=(5, 3.4))
    ax = fig.subplots()
    ax.plot(sig, [r["mean_rank"] for r in rows], "o-", label="mean over trajectories")
    ax.fill_between(sig, [r["min_rank"] for r in rows], [r["max_rank"] for r in rows], alpha=0.3, label="min–max")
    ax.axhline(dim, color="grey", ls=":", label=f"ambient dimension {dim}")
    return _finish(fig, ax, path, "σ", "numerical rank of ∂D/∂x (99% energy)")


def _finish(fig, ax, path, xlabel: str, ylabel: str, base: float = 10):
    """Log x axis, labels, legend; lay out, write to ``path`` when given, return the figure."""
    ax.set_xscale("log", base=base)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
    return fig
