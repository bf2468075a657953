"""Lattice maths, periodic radius graphs, e3nn layers and the equivariant encoder: what every crystal model can
build on (no model family here)."""
