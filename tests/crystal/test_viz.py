"""Cell pictures: drawn atom images and bonds counted by construction, and a drawn figure with one panel per
cell, its title, legend and bond rule."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from pymatgen.core import Lattice, Structure

from genlowdim.crystal.viz import BOND_RULE, boundary_images, cell_bonds, draw_cells, picture


def _picture(structure):
    return picture(structure.frac_coords, cell_bonds(structure))


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


def test_simple_cubic_cell_draws_its_eight_corners_joined_along_the_twelve_edges():
    # one atom at the origin: 8 corner images; its 6 neighbours are its own images one lattice vector away
    pic = _picture(Structure(Lattice.cubic(2.5), ["Po"], [[1e-12, 0.0, -1e-12]]))   # wraps to the origin
    assert len(pic.rows) == 8 and set(pic.owners) == {0}
    assert len(pic.full) == 12 and len(pic.half) == 0
    lengths = np.linalg.norm(pic.rows[pic.full[:, 0]] - pic.rows[pic.full[:, 1]], axis=1)
    assert np.allclose(lengths, 1.0)   # every drawn bond is a cell edge


def test_rock_salt_conventional_cell_is_the_3x3x3_grid_with_its_54_bonds(small_structures):
    # Na: 1 corner (8 images) + 3 face centres (2 each) = 14; Cl: 3 edge centres (4 each) + body centre = 13
    nacl = small_structures["NaCl"]
    pic = _picture(nacl)
    species = np.array([s.specie.symbol for s in nacl])[pic.owners]
    assert len(pic.rows) == 27 and (species == "Na").sum() == 14 and (species == "Cl").sum() == 13
    # nearest-neighbour pairs of a 3x3x3 grid: 3 directions x 2 x 9 = 54, each Na-Cl; the body-centre Cl has
    # all 6 of its bonds inside the picture, so no bond leaves it half-drawn
    assert len(pic.full) == 54 and len(pic.half) == 0
    assert all({species[a], species[b]} == {"Na", "Cl"} for a, b in pic.full)
    assert len(cell_bonds(nacl)) == 8 * 6 // 2   # 6 bonds per atom, each shared by two atoms


def test_perovskite_bonds_are_the_ti_o6_octahedron(small_structures):
    # CrystalNN alone counts 12 O around Sr, but O counts only its 2 Ti: the mutual rule keeps Ti-O
    srtio3 = small_structures["SrTiO3"]
    bonds = cell_bonds(srtio3)
    symbols = [s.specie.symbol for s in srtio3]
    assert len(bonds) == 6 and all({symbols[i], symbols[j]} == {"Ti", "O"} for i, j, *_ in bonds)
    pic = picture(srtio3.frac_coords, bonds)
    assert len(pic.rows) == 8 + 1 + 3 * 2 and len(pic.full) == 6 and len(pic.half) == 0


def test_cscl_type_cell_draws_the_eight_bonds_of_its_centre():
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    pic = _picture(cscl)
    assert len(pic.rows) == 9 and len(pic.full) == 8 and len(pic.half) == 0
    assert all(1 in pic.owners[pair] and 0 in pic.owners[pair] for pair in pic.full)


def test_diamond_primitive_cell_has_four_bonds_per_carbon_and_half_bonds_leave_the_cell():
    a = 3.567
    diamond = Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["C", "C"],
                        [[0, 0, 0], [0.25, 0.25, 0.25]])
    bonds = cell_bonds(diamond)
    assert len(bonds) == 4 and np.bincount(bonds[:, :2].ravel()).tolist() == [8 // 2, 8 // 2]
    cart = diamond.lattice.get_cartesian_coords(diamond.frac_coords[bonds[:, 1]] + bonds[:, 2:]
                                                - diamond.frac_coords[bonds[:, 0]])
    assert np.allclose(np.linalg.norm(cart, axis=1), a * np.sqrt(3) / 4)   # the C-C bond, 1.545 Å
    pic = picture(diamond.frac_coords, bonds)
    # the inside atom's 4 neighbours are the cell's corners 000, 100, 010, 001: all 4 bonds drawn whole
    assert len(pic.rows) == 9 and len(pic.full) == 4 and len(pic.half) == 0
    # moved off the boundary, both atoms are drawn once: the bond between them is whole, and each atom's
    # other 3 bonds leave the picture and are drawn to their midpoints
    pic = picture(diamond.frac_coords + 0.1, bonds)
    assert len(pic.rows) == 2 and len(pic.full) == 1 and len(pic.half) == 6
    half = diamond.lattice.get_cartesian_coords(pic.half_ends - pic.rows[pic.half])
    assert np.allclose(np.linalg.norm(half, axis=1), a * np.sqrt(3) / 8)


def test_draw_cells_one_panel_per_structure_titled_by_formula(small_structures, tmp_path):
    structures = [small_structures["SrTiO3"], small_structures["NaCl"]]
    fig = draw_cells(structures, path=tmp_path / "cells.png")
    assert (tmp_path / "cells.png").stat().st_size > 0
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("SrTiO3, 5 atoms") and "Pm-3m" in titles[0]
    assert titles[1].startswith("NaCl, 8 atoms") and "Fm-3m" in titles[1]
    lattice = small_structures["SrTiO3"].lattice
    assert f"a {lattice.a:.2f}, b {lattice.b:.2f}, c {lattice.c:.2f} Å" in titles[0] and "α 90°" in titles[0]
    # one legend for the figure, below every panel; the bond rule is written on the figure
    legend = fig.legends[0]
    assert sorted(t.get_text() for t in legend.get_texts()) == ["Cl", "Na", "O", "Sr", "Ti"]
    renderer = FigureCanvasAgg(fig).get_renderer()
    legend_top = legend.get_window_extent(renderer).y1
    assert all(legend_top < ax.get_window_extent(renderer).y0 + 1 for ax in fig.axes)
    assert any(BOND_RULE in t.get_text().replace("\n", " ") for t in fig.texts)
    with pytest.raises(ValueError, match="no structures"):
        draw_cells([])


def test_draw_cells_keeps_a_picture_when_the_neighbour_search_fails(small_structures, monkeypatch):
    def refuse(structure):
        raise ValueError("sites overlap")

    monkeypatch.setattr("genlowdim.crystal.viz.cells.cell_bonds", refuse)
    fig = draw_cells([small_structures["SrTiO3"]], titles=["sample 0"])
    title = fig.axes[0].get_title()
    assert title.startswith("sample 0\na 3.90") and title.endswith("no bonds: neighbour search failed (ValueError)")
    assert len(fig.axes[0].lines) == 12   # the cell's edges only
