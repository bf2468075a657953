"""Evaluation histograms: integer quantities get integer ticks and one bin per integer; the property axis
names the dataset's property and its unit from the registry."""
from __future__ import annotations

import numpy as np

from genlowdim.metrics.plots import histogram_figure, property_label, write_histograms
from genlowdim.structures.registry import DATASETS


def _visible_ticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [float(v) for v in ax.xaxis.get_majorticklocs() if lo <= v <= hi]


def test_integer_histogram_has_integer_ticks_and_one_bin_per_integer():
    # 2 and 3 distinct elements only: a float axis put ticks at 1.5, 2.0, 2.5, ...
    reference, generated = np.array([2, 3, 3, 3, 2]), np.array([3, 3, 2])
    ax = histogram_figure(reference, generated, "number of distinct elements", integer=True).axes[0]
    ticks = _visible_ticks(ax)
    assert ticks and all(t == round(t) for t in ticks) and {2.0, 3.0} <= set(ticks)
    bars = ax.patches[: len(ax.patches) // 2]   # the reference's bars: edges at 1.5, 2.5, 3.5
    assert [b.get_x() for b in bars] == [1.5, 2.5] and [b.get_width() for b in bars] == [1.0, 1.0]
    assert [b.get_height() for b in bars] == [0.4, 0.6]   # 2 of 5 crystals with 2 elements, 3 with 3


def test_wide_integer_histogram_still_has_integer_ticks():
    counts = np.arange(1, 60)
    ax = histogram_figure(counts, counts[::3], "number of atoms in the cell", integer=True).axes[0]
    ticks = _visible_ticks(ax)
    assert len(ticks) >= 3 and all(t == round(t) for t in ticks)


def test_property_axis_names_property_and_unit():
    assert property_label("perov_5") == "heat_ref (eV/atom), predicted by the property model"
    assert property_label("carbon_24").startswith("energy_per_atom (eV/atom)")
    assert "unit" in property_label(None) and "unit" in property_label("my_folder")
    # every registered dataset records the unit of every property column it declares
    assert all(set(spec.units) == set(spec.properties) for spec in DATASETS.values())


def test_write_histograms_names_the_files_and_labels(tmp_path):
    q = {"density": np.array([1.0, 2.0, 3.0]), "num_elems": np.array([2, 3, 3])}
    paths = write_histograms(tmp_path, np.array([True, True, False]), 10, 0,
                             {"reference": np.array([0.1, 0.5]), "generated": np.array([0.3])}, q, q, "perov_5")
    assert [p.name for p in paths] == ["hist_density.png", "hist_num_elements.png", "hist_property.png"]
    assert all(p.stat().st_size > 0 for p in paths)
