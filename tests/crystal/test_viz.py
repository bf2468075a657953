"""Cell pictures: boundary images counted by construction, and a drawn figure with one panel per cell."""
from __future__ import annotations

import numpy as np
import pytest

from genlowdim.crystal.viz import boundary_images, draw_cells


def test_boundary_images_repeat_corner_edge_and_face_atoms():
    frac = np.array([[0.0, 0.0, 0.0],      # corner: 8 positions
                     [0.5, 0.0, 0.0],      # edge: 4
                     [0.5, 0.5, 0.995],    # face (near c = 1): 2
                     [0.5, 0.5, 0.5]])     # inside: 1
    rows, owners = boundary_images(frac)
    assert np.bincount(owners).tolist() == [8, 4, 2, 1]
    corner = rows[owners == 0]
    assert {tuple(r) for r in corner} == {(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)}
    assert np.allclose(sorted(rows[owners == 2][:, 2]), [-0.005, 0.995])


def test_draw_cells_one_panel_per_structure_titled_by_formula(small_structures, tmp_path):
    structures = [small_structures["SrTiO3"], small_structures["NaCl"]]
    fig = draw_cells(structures, path=tmp_path / "cells.png")
    assert (tmp_path / "cells.png").stat().st_size > 0
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("SrTiO3") and "Pm-3m" in titles[0]
    assert titles[1].startswith("NaCl") and "Fm-3m" in titles[1]
    legend = fig.axes[0].get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == ["O", "Sr", "Ti"]
    assert legend.get_bbox_to_anchor().transformed(fig.axes[0].transAxes.inverted()).y1 <= 0
    lattice = small_structures["SrTiO3"].lattice
    assert f"a {lattice.a:.2f}, b {lattice.b:.2f}, c {lattice.c:.2f} Å" in titles[0] and "α 90°" in titles[0]
    with pytest.raises(ValueError, match="no structures"):
        draw_cells([])
