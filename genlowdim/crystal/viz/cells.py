"""Ball-and-stick pictures of crystal cells on ``matplotlib.figure.Figure`` objects (no pyplot state).

Atoms are discs in Jmol element colours sized by covalent radius, bonds are drawn in the colours of their two
atoms, everything painted back to front along the view direction; the cell is outlined dashed, an a/b/c axis
marker sits in the panel's corner, and each panel is titled with formula, atom count, space group and lattice
parameters. The element legend and the bond rule sit below the cells, never over them.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .geometry import BOND_RULE, CellPicture, cell_bonds, picture

VIEW = "-70x,-20y,0z"   # ASE rotation string: a slightly tilted view down the c axis
RADIUS_SCALE = 0.45     # disc radius = this × covalent radius (Å), as ASE's plot_atoms(radii=0.45)
BOND_WIDTH = 3.6        # points, the dark edge included
NOTE = (f"{BOND_RULE}; atoms on cell faces, edges and corners repeated at each periodic image; "
        "bonds leaving the cell end half-way")
CORNERS = np.array(list(np.ndindex(2, 2, 2)), dtype=float)
EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(CORNERS[a] - CORNERS[b]).sum() == 1]


def lattice_label(structure) -> str:
    """``a b c`` in Å and ``α β γ`` in degrees, as a panel's second title line."""
    lat = structure.lattice
    return (f"a {lat.a:.2f}, b {lat.b:.2f}, c {lat.c:.2f} Å; "
            f"α {lat.alpha:.0f}°, β {lat.beta:.0f}°, γ {lat.gamma:.0f}°")


def cell_title(structure) -> str:
    """Reduced formula, atoms in the cell and space group (symprec 0.1 Å), then the lattice parameters."""
    head = f"{structure.composition.reduced_formula}, {len(structure)} atoms"
    try:
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        head += f", {SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol()} (symprec 0.1)"
    except Exception:  # noqa: BLE001 - a symmetry failure must not lose the picture
        pass
    return f"{head}\n{lattice_label(structure)}"


def _bonds_or_none(structure) -> tuple[np.ndarray, str]:
    try:
        return cell_bonds(structure), ""
    except Exception as err:  # noqa: BLE001 - e.g. overlapping atoms of a bad sample: draw it unbonded
        return np.zeros((0, 5), dtype=int), f"\nno bonds: neighbour search failed ({type(err).__name__})"


def _draw_bond(ax, start, end, radius, color) -> None:
    """One bond half from the rim of the atom's disc at ``start`` to ``end`` (projected positions, depth
    last), in the atom's colour over a dark edge, painted at its mean depth; nothing when the half hides
    behind or inside the disc (a bond along the view direction)."""
    d = end[:2] - start[:2]
    length = float(np.linalg.norm(d))
    if length <= radius:
        return
    p = start[:2] + d * radius / length
    z = (start[2] + end[2]) / 2
    for width, shade, dz in ((BOND_WIDTH, "0.15", -1e-3), (BOND_WIDTH - 1.4, color, 0.0)):
        ax.plot([p[0], end[0]], [p[1], end[1]], color=shade, lw=width, solid_capstyle="butt", zorder=z + dz)


def _draw_panel(ax, structure, pic: CellPicture, rotation: np.ndarray) -> None:
    from ase.data import covalent_radii
    from ase.data.colors import jmol_colors
    from matplotlib.patches import Circle

    matrix = structure.lattice.matrix
    proj = pic.rows @ matrix @ rotation                      # (M, 3): x, y on paper, z towards the viewer
    numbers = np.array([site.specie.Z for site in structure])[pic.owners]
    radii = RADIUS_SCALE * covalent_radii[numbers]
    for r, (x, y, z) in enumerate(proj):
        ax.add_patch(Circle((x, y), radii[r], facecolor=jmol_colors[numbers[r]], edgecolor="black", lw=0.6,
                            zorder=z))
    for a, b in pic.full:
        mid = (proj[a] + proj[b]) / 2
        _draw_bond(ax, proj[a], mid, radii[a], jmol_colors[numbers[a]])
        _draw_bond(ax, proj[b], mid, radii[b], jmol_colors[numbers[b]])
    for r, end in zip(pic.half, pic.half_ends @ matrix @ rotation):
        _draw_bond(ax, proj[r], end, radii[r], jmol_colors[numbers[r]])
    corners = CORNERS @ matrix @ rotation
    for a, b in EDGES:
        ax.plot(*corners[[a, b], :2].T, color="black", lw=0.7, ls=(0, (4, 3)), zorder=corners[[a, b], 2].mean())
    _axis_marker(ax, matrix @ rotation)
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.set_axis_off()


def _axis_marker(ax, vectors: np.ndarray) -> None:
    """Arrows along the projected a, b, c in the lower left corner (lengths in points, 18 for the longest)."""
    flat = vectors[:, :2] / np.linalg.norm(vectors[:, :2], axis=1).max()
    for name, (dx, dy) in zip("abc", flat):
        unit = np.array([dx, dy]) / max(np.hypot(dx, dy), 1e-9)
        ax.annotate(name, xy=(0.04, 0.05), xycoords="axes fraction", xytext=18 * np.array([dx, dy]) + 6 * unit,
                    textcoords="offset points", fontsize=7, style="italic", ha="center", va="center",
                    arrowprops={"arrowstyle": "<-", "lw": 0.7, "shrinkA": 3, "shrinkB": 0,
                                "relpos": (0.5, 0.5)})


def _legend_and_note(fig: Figure, numbers: set[int], columns: int) -> float:
    """The element legend and the bond rule below the panels; returns the height they take (inches)."""
    from ase.data import chemical_symbols
    from ase.data.colors import jmol_colors
    from matplotlib.patches import Patch

    height = fig.get_figheight()
    note = textwrap.wrap(NOTE, 60 * columns)
    fig.text(0.5, 0.04 / height, "\n".join(note), ha="center", va="bottom", fontsize=7, color="0.3")
    legend_at = 0.1 + 0.13 * len(note)
    handles = [Patch(facecolor=jmol_colors[z], edgecolor="black", label=chemical_symbols[z])
               for z in sorted(numbers)]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, legend_at / height),
               ncol=min(len(handles), 10), fontsize=8, frameon=False, handlelength=1.0)
    return legend_at + 0.3


def _place_panels(fig: Figure, rows: int, below: float) -> None:
    """Margins in inches, set once (tight_layout misjudges equal-aspect panels): room for three title lines
    above each row and for the legend and note below the last."""
    height, title = fig.get_figheight(), 0.55
    panel = (height - below - rows * title) / rows
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - title / height, bottom=below / height,
                        hspace=title / panel, wspace=0.04)


def draw_cells(structures: Sequence, *, titles: Sequence[str] | None = None, max_cells: int = 6,
               columns: int = 3, rotation: str = VIEW, path: str | Path | None = None) -> Figure:
    """Draw up to ``max_cells`` pymatgen structures in a grid; save to ``path`` when given.

    Returns the figure. Each panel: the cell's atoms and their images on its boundary, bonds by
    :data:`~genlowdim.crystal.viz.geometry.BOND_RULE` (:func:`~genlowdim.crystal.viz.geometry.picture`), the
    dashed cell, an a/b/c marker, and :func:`cell_title` (or ``titles[i]``, lattice parameters appended).
    One legend of the elements and the bond rule sit below all panels."""
    from ase.utils import rotate

    shown = list(structures)[:max_cells]
    if not shown:
        raise ValueError("draw_cells: no structures to draw")
    cols = min(columns, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(3.4 * cols, 3.6 * rows + 0.9))
    view = rotate(rotation)
    for k, s in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        bonds, failure = _bonds_or_none(s)
        _draw_panel(ax, s, picture(s.frac_coords, bonds), view)
        title = cell_title(s) if titles is None else f"{titles[k]}\n{lattice_label(s)}"
        ax.set_title(title + failure, fontsize=8)
    below = _legend_and_note(fig, {site.specie.Z for s in shown for site in s}, cols)
    _place_panels(fig, rows, below)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
