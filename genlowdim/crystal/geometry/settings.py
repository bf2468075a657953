"""Settings of the equivariant message-passing stacks (read from a config's ``model.encoder`` and
``model.decoder``)."""
from __future__ import annotations

from dataclasses import dataclass

from genlowdim.config import check_fields


@dataclass(frozen=True)
class GraphNetConfig:
    """An e3nn message-passing stack on the periodic radius graph (step times per size: docs/cdvae.md)."""
    num_layers: int = 3
    num_scalars: int = 64
    num_vectors: int = 32
    num_l2: int = 0                      # > 0 adds l = 2 hidden features (about 4x dearer)
    lmax_sh: int = 1                     # spherical-harmonic degree of the edge directions
    cutoff: float = 6.0                  # Å
    max_neighbors: int | None = 12
    num_basis: int = 8
    radial_hidden: int = 64
    avg_num_neighbors: float = 12.0
    readout_dim: int | None = None       # encoder only: per-atom readout width before pooling (None: num_scalars)

    def __post_init__(self) -> None:
        check_fields(self, num_layers="positive", num_scalars="positive", num_vectors="non_negative",
                     num_l2="non_negative", lmax_sh="positive", cutoff="positive", max_neighbors="positive",
                     num_basis="positive", radial_hidden="positive", avg_num_neighbors="positive",
                     readout_dim="positive")
