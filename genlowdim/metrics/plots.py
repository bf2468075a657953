"""Histograms of generated crystals against the reference, on ``matplotlib.figure.Figure`` objects (no pyplot
state): each axis names its quantity and unit, and counts get integer ticks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from genlowdim.metrics.properties import seeded_subsample
from genlowdim.structures.registry import DATASETS


def property_label(dataset: str | None) -> str:
    """The property axis of a registered dataset, e.g. ``heat_ref (eV/atom), by the property model``; a
    dataset the registry does not know gives a label that says the name and unit are not known here."""
    spec = DATASETS.get(dataset or "")
    if spec is None:
        return "property predicted by the property model (its training labels' unit)"
    unit = spec.unit()
    return f"{spec.property}{f' ({unit})' if unit else ''}, predicted by the property model"


def histogram_figure(reference: np.ndarray, generated: np.ndarray, label: str, *, integer: bool = False,
                     bins: int = 40) -> Figure:
    """Reference and generated values as two overlaid density histograms, counts of each in the legend.

    integer: the values are counts (atoms, elements): one bin per integer, centred on it, and integer ticks
    only."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    both = np.concatenate([np.asarray(reference, float), np.asarray(generated, float)])
    lo, hi = (float(np.min(both)), float(np.max(both))) if len(both) else (0.0, 1.0)
    edges = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0) if integer else np.linspace(lo, hi + 1e-9, bins)
    ax.hist(reference, bins=edges, density=True, alpha=0.5, label=f"reference ({len(reference)})")
    ax.hist(generated, bins=edges, density=True, alpha=0.5, label=f"generated, valid sample ({len(generated)})")
    ax.set_xlabel(label)
    if integer:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("share of crystals per unit" if not integer else "share of crystals")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_histograms(out_dir: Path, valid, num_samples: int, seed: int, prop_items: dict, quantities: dict,
                     reference_quantities: dict, dataset: str | None = None) -> list[Path]:
    """hist_density.png, hist_num_elements.png and (with a predictor) hist_property.png, from the
    per-crystal quantities the evaluation already computed (the generated side: its seeded valid
    subsample)."""
    idx = seeded_subsample(valid, num_samples, seed)
    gen, ref = quantities, reference_quantities
    panels = [("density", ref["density"], gen["density"][idx], "density (g/cm³)", False),
              ("num_elements", ref["num_elems"], gen["num_elems"][idx], "number of distinct elements", True)]
    if "generated" in prop_items:
        panels.append(("property", prop_items["reference"], prop_items["generated"], property_label(dataset),
                       False))
    paths = []
    for name, ref_v, gen_v, label, integer in panels:
        path = Path(out_dir) / f"hist_{name}.png"
        histogram_figure(ref_v, gen_v, label, integer=integer).savefig(path, dpi=100)
        paths.append(path)
    return paths
