"""Pictures of crystal structures drawn the way the field draws them (ASE's conventions).

Atoms are discs with Jmol element colours and covalent radii (``ase.visualize.plot.plot_atoms``), the unit
cell is outlined, atoms on a cell face, edge or corner are repeated at the equivalent positions of the
cell's boundary (as VESTA and ASE's GUI show a cell), each panel is titled with the reduced formula, space
group and lattice parameters, and its element legend sits below the cell. Figures are ``matplotlib.figure.Figure`` objects (no pyplot state): a notebook displays the
returned figure, a script saves it.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

BOUNDARY_TOL = 0.02   # fractional distance from a cell face within which an atom is drawn on both faces
VIEW = "-70x,-20y,0z"  # ASE rotation string: a slightly tilted view of the c axis


def boundary_images(frac_coords: np.ndarray, tol: float = BOUNDARY_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Atoms inside the cell plus their images on the cell's boundary.

    ``frac_coords``: (N, 3), wrapped into [0, 1). An atom within ``tol`` of a face is drawn on the
    opposite face too. Returns (M, 3) fractional coordinates and (M,) indices of the original atom each row
    shows; an atom at a corner appears 8 times, on an edge 4, on a face 2."""
    frac = np.mod(np.asarray(frac_coords, dtype=float), 1.0)
    rows, owners = [], []
    for i, f in enumerate(frac):
        shifts = [(0.0, 1.0) if x < tol else (0.0, -1.0) if x > 1.0 - tol else (0.0,) for x in f]
        for shift in itertools.product(*shifts):
            rows.append(f + np.array(shift))
            owners.append(i)
    return np.array(rows).reshape(-1, 3), np.array(owners, dtype=int)


def _to_ase(structure, with_images: bool = True):
    from ase import Atoms

    numbers = np.array([site.specie.Z for site in structure])
    frac = structure.frac_coords
    if with_images:
        frac, owners = boundary_images(frac)
        numbers = numbers[owners]
    cell = structure.lattice.matrix
    return Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=False)


def lattice_label(structure) -> str:
    """``a b c`` in Å and ``α β γ`` in degrees, as a panel's second title line."""
    lat = structure.lattice
    return (f"a {lat.a:.2f}, b {lat.b:.2f}, c {lat.c:.2f} Å; "
            f"α {lat.alpha:.0f}°, β {lat.beta:.0f}°, γ {lat.gamma:.0f}°")


def _title(structure) -> str:
    formula = structure.composition.reduced_formula
    try:
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        symbol = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol()
        formula = f"{formula}  ({symbol}, symprec 0.1)"
    except Exception:  # noqa: BLE001 - a symmetry failure must not lose the picture
        pass
    return f"{formula}\n{lattice_label(structure)}"


def draw_cells(structures: Sequence, *, titles: Sequence[str] | None = None, max_cells: int = 6,
               columns: int = 3, rotation: str = VIEW, path: str | Path | None = None) -> Figure:
    """Draw up to ``max_cells`` pymatgen structures in a grid; save to ``path`` when given.

    Returns the figure. Each panel: ASE disc rendering (Jmol colours, covalent radii), the cell outline,
    boundary images, the formula, space group and lattice parameters (or ``titles[i]``), and a legend of the
    elements below the cell."""
    from ase.data import chemical_symbols
    from ase.data.colors import jmol_colors
    from ase.visualize.plot import plot_atoms
    from matplotlib.patches import Patch

    shown = list(structures)[:max_cells]
    if not shown:
        raise ValueError("draw_cells: no structures to draw")
    cols = min(columns, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(3.3 * cols, 3.9 * rows))
    for k, s in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        atoms = _to_ase(s)
        plot_atoms(atoms, ax, rotation=rotation, radii=0.45, show_unit_cell=2)
        ax.set_title(titles[k] if titles is not None else _title(s), fontsize=9)
        ax.set_axis_off()
        elements = sorted({int(z) for z in atoms.numbers})
        handles = [Patch(facecolor=jmol_colors[z], edgecolor="black", label=chemical_symbols[z])
                   for z in elements]
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
                  handlelength=1.0, ncol=len(handles))   # below the cell, never over it
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
