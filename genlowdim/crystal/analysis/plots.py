"""Figures of the crystal latent-structure analysis, on ``matplotlib.figure.Figure`` objects (no pyplot state):
written as PNG when given a path, displayed as returned in a notebook."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

METHODS = (("union_of_subspaces", "union of subspaces"), ("kmeans", "K-means"), ("gmm", "Gaussian mixture"),
           ("supervised_nearest_subspace", "supervised nearest subspace"))


def _save(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


def plot_latent_structure(intrinsic: dict, union: dict, path=None) -> Figure:
    """Left: cumulative PCA variance of μ with the intrinsic-dimension estimates; right: the share of the
    squared norm that K subspaces of dimension d keep against one subspace of dimension d."""
    fig = Figure(figsize=(9, 3.4))
    ax, bx = fig.subplots(1, 2)
    cum = np.cumsum(intrinsic["pca_variance_fraction"])
    ax.plot(np.arange(1, len(cum) + 1), cum, "o-", ms=3, label="PCA, cumulative variance")
    for key, style, name in (("twonn", "--", "TwoNN"), ("mle", ":", "MLE"), ("pca_95", "-.", "PCA 95%")):
        ax.axvline(intrinsic[key], ls=style, color="grey")
        ax.text(intrinsic[key], 0.05 + 0.1 * ("twonn", "mle", "pca_95").index(key), f" {name} {intrinsic[key]:.1f}",
                fontsize=7)
    ax.set_xlabel(f"principal directions (of {intrinsic['ambient_dim']})")
    ax.set_ylabel("variance explained")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    rows = union["explained_by_dimension"]
    dims = [r["dim"] for r in rows]
    bx.plot(dims, [r["union"] for r in rows], "o-", ms=3, label=f"union of K={union['num_clusters']} subspaces")
    bx.plot(dims, [r["single"] for r in rows], "s--", ms=3, label="one subspace (PCA)")
    bx.set_xlabel("subspace dimension d")
    bx.set_ylabel("share of ||z − mean||² kept (unit rows)")
    bx.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_latent_scatter(z: np.ndarray, labels: np.ndarray, classes: list[str], title: str, path=None) -> Figure:
    """The first two principal components of z: (N, latent), coloured by an integer label (N,) (-1 grey)."""
    zc = z - z.mean(0)
    pcs = zc @ np.linalg.svd(zc, full_matrices=False)[2][:2].T
    fig = Figure(figsize=(4.6, 3.8))
    ax = fig.subplots()
    ax.scatter(*pcs[labels < 0].T, s=2, color="lightgrey")
    for c, name in enumerate(classes[:10]):
        ax.scatter(*pcs[labels == c].T, s=2, label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, markerscale=4, loc="best")
    return _save(fig, path)


def plot_label_alignment(alignment: dict, path=None) -> Figure:
    """NMI and accuracy per label and clustering method (grouped bars)."""
    names = [n for n, row in alignment.items() if "skipped" not in row]
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2)
    width = 0.8 / len(METHODS)
    for ax, metric in zip(axes, ("nmi", "accuracy")):
        for m, (key, label) in enumerate(METHODS):
            values = [alignment[n][key][metric] for n in names]
            ax.bar(np.arange(len(names)) + (m - 1.5) * width, values, width, label=label)
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels([f"{n}\n(K={alignment[n]['num_classes']})" for n in names], fontsize=7)
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=6)
    return _save(fig, path)


def plot_jacobian_ranks(jac: dict, digits: list[dict] | None = None, path=None) -> Figure:
    """Numerical rank / ambient dimension against σ: medians (lines) and crystals (dots) of the coordinate
    denoiser, its translation-free part and the type probabilities; digits' MLP profile when given."""
    levels = jac["levels"]
    sig = [lv["sigma"] for lv in levels]
    dim = np.array(jac["ambient_dim"], float)
    fig = Figure(figsize=(5.4, 3.6))
    ax = fig.subplots()
    curves = (("coord", "coordinates, ∂x̂₀/∂x", dim), ("coord_internal", "coordinates, translations removed", dim - 3),
              ("types", "type probabilities", dim))
    for key, label, denom in curves:
        per = np.array([lv[key] for lv in levels], float) / denom[None, :]
        line, = ax.plot(sig, np.median(per, 1), "o-", ms=3, label=label)
        for j in range(per.shape[1]):
            ax.plot(sig, per[:, j], ".", color=line.get_color(), alpha=0.3, ms=3)
    if digits:
        ax.plot([r["sigma"] for r in digits], [r["mean_rank"] / 64 for r in digits], "k--", lw=1,
                label="digits MLP (rank / 64)")
    ax.set_xscale("log")
    ax.set_xlabel("σ (Å for coordinates)")
    ax.set_ylabel("numerical rank / dimension (99%)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_editing(edit: dict, crystal: int = 0, path=None) -> Figure:
    """Volume per atom and property head along each direction (subspace: solid, orthogonal: dashed), with the
    composition head's formula at the ends of the subspace directions."""
    entry = edit["crystals"][crystal]
    steps = edit["steps"]
    has_prop = entry["directions"][0]["decoded"][0]["property"] is not None
    fig = Figure(figsize=(9 if has_prop else 5, 3.4))
    axes = fig.subplots(1, 2 if has_prop else 1)
    axes = np.atleast_1d(axes)
    for d in entry["directions"]:
        style = "o-" if d["kind"] == "subspace" else "x--"
        label = f"{d['kind']} {d['index'] + 1}"
        axes[0].plot(steps, [x["volume_per_atom"] for x in d["decoded"]], style, ms=3, label=label)
        if has_prop:
            axes[1].plot(steps, [x["property"] for x in d["decoded"]], style, ms=3, label=label)
        if d["kind"] == "subspace":
            for i in (0, len(steps) - 1):
                axes[0].annotate(d["decoded"][i]["formula"], (steps[i], d["decoded"][i]["volume_per_atom"]), fontsize=6)
    axes[0].set_ylabel("volume per atom (Å³)")
    if has_prop:
        axes[1].set_ylabel("property head")
    for ax in axes:
        ax.set_xlabel("step α (cluster std along direction 1)")
    axes[0].legend(fontsize=6)
    fig.suptitle(f"crystal {entry['crystal']} (cluster {entry['cluster']})", fontsize=9)
    return _save(fig, path)
