"""Decoded crystals: what every crystal model's ``sample``, ``reconstruct`` and ``predict`` return, and what
the runs write (``to_structures``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DecodedCrystals", "batch_to_decoded"]


@dataclass
class DecodedCrystals:
    """A batch of decoded crystals: frac_coords (N,3) in [0,1), atom_types (N,) atomic numbers,
    lengths (B,3) Å, angles (B,3) degrees, num_atoms (B,), decoder_calls (per batch), lattice_clamped (B,)
    bool: the predicted lattice needed the decoder's clamp (e.g.
    :meth:`~genlowdim.crystal.cdvae.model.CDVAE.lattice_clamped`)."""
    frac_coords: torch.Tensor
    atom_types: torch.Tensor
    lengths: torch.Tensor
    angles: torch.Tensor
    num_atoms: torch.Tensor
    decoder_calls: int = 0
    lattice_clamped: torch.Tensor | None = None

    def __post_init__(self):
        if self.lattice_clamped is None:
            self.lattice_clamped = torch.zeros(len(self.num_atoms), dtype=torch.bool)

    def to_structures(self):
        """List of pymatgen ``Structure`` (P1)."""
        from pymatgen.core import Lattice, Structure   # heavy (~1 s); only writers and metrics need it

        out, start = [], 0
        for b, n in enumerate(self.num_atoms.tolist()):
            lat = Lattice.from_parameters(*self.lengths[b].tolist(), *self.angles[b].tolist())
            out.append(Structure(lat, self.atom_types[start:start + n].tolist(),
                                 self.frac_coords[start:start + n].tolist(), coords_are_cartesian=False))
            start += n
        return out


def batch_to_decoded(batch) -> DecodedCrystals:
    """The ground-truth crystals of a PyG batch in the same container (for writing truths)."""
    return DecodedCrystals(batch.frac_coords, batch.atom_types, batch.lengths.view(-1, 3),
                           batch.angles.view(-1, 3), batch.num_atoms)
