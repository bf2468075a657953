"""Pictures of crystal cells drawn the way the field draws them.

:mod:`.geometry` says what a picture holds (the cell's atoms, their periodic images on the cell's faces,
edges and corners, the bonds between them by a stated neighbour rule), as numbers that tests count;
:mod:`.cells` draws it (ball-and-stick, Jmol colours, lattice parameters in each panel's title, legend and
bond rule below the cells).
"""
from .cells import VIEW, cell_title, draw_cells, lattice_label
from .geometry import BOND_RULE, BOUNDARY_TOL, CellPicture, boundary_images, cell_bonds, picture

__all__ = ["draw_cells", "cell_title", "lattice_label", "boundary_images", "cell_bonds", "picture",
           "CellPicture", "BOND_RULE", "BOUNDARY_TOL", "VIEW"]
