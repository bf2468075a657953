"""Cell description and symmetrised CIFs of a crystal: lattice parameters, volume per atom and space group
found by spglib (pymatgen ``SpacegroupAnalyzer``) at a stated ``symprec``.

``symprec`` (Å) is the largest displacement by which atoms may differ from a symmetric arrangement; 0.1 Å is
loose (a generated or relaxed cell that is almost cubic reads as cubic), 0.01 Å strict.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["cell_summary", "format_cell", "write_symmetrized_cifs", "point_group_order", "SYMPREC"]

SYMPREC = 0.1   # Å


def _space_group(structure, symprec: float) -> tuple[str, int | None]:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
        return analyzer.get_space_group_symbol(), analyzer.get_space_group_number()
    except Exception:  # noqa: BLE001 - spglib gives up on some cells; say so rather than fail the run
        return "unknown", None


def point_group_order(structure, symprec: float = SYMPREC) -> int:
    """Number of point-group operations spglib finds at ``symprec`` (Å): 48 for a cubic perovskite, 16 for a
    tetragonal P4/mmm cell, 1 for P1 (also when spglib gives up)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return len(SpacegroupAnalyzer(structure, symprec=symprec).get_point_group_operations())
    except Exception:  # noqa: BLE001 - as _space_group: an unanalysable cell counts as P1
        return 1


def cell_summary(structure, symprec: float = SYMPREC) -> dict:
    """``a, b, c`` (Å), ``alpha, beta, gamma`` (degrees), ``volume_per_atom`` (Å³), ``space_group`` (symbol),
    ``space_group_number`` and the ``symprec`` (Å) it was found at."""
    a, b, c = structure.lattice.abc
    alpha, beta, gamma = structure.lattice.angles
    symbol, number = _space_group(structure, symprec)
    return {"a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma,
            "volume_per_atom": structure.volume / len(structure), "space_group": symbol,
            "space_group_number": number, "symprec": symprec}


def format_cell(name: str, cell: dict) -> str:
    """One line: name, lattice, volume per atom, space group (with its tolerance)."""
    return (f"{name}: a={cell['a']:.3f} b={cell['b']:.3f} c={cell['c']:.3f} Å, α={cell['alpha']:.1f} "
            f"β={cell['beta']:.1f} γ={cell['gamma']:.1f}°, {cell['volume_per_atom']:.2f} Å³/atom, "
            f"{cell['space_group']} ({cell['space_group_number']}) at symprec {cell['symprec']} Å")


def write_symmetrized_cifs(structures: Sequence, names: Sequence[str], folder: str | Path,
                           symprec: float = SYMPREC) -> list[Path]:
    """``folder/<name>.cif`` with the space group and its asymmetric unit (pymatgen ``CifWriter`` with
    ``symprec``); a cell spglib cannot analyse is written in P1."""
    from pymatgen.io.cif import CifWriter

    from genlowdim.runtime import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for structure, name in zip(structures, names):
        try:
            text = str(CifWriter(structure, symprec=symprec))
        except Exception:  # noqa: BLE001
            text = str(CifWriter(structure))
        paths.append(folder / f"{name}.cif")
        atomic_write_text(paths[-1], text)
    return paths
