"""The models' view of a crystal dataset: ``CrystalDataset[i]`` -> ``torch_geometric.data.Data``.

Parsing, preprocessing, the load report and the cache are ``genlowdim.structures.datasets``; this module
turns its records into the tensors the encoder and decoder read.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch_geometric.data import Data

from genlowdim.structures.datasets import CrystalRecord, LoadReport, load_records
from genlowdim.structures.registry import DatasetSpec

__all__ = ["CrystalDataset", "load_dataset"]


class CrystalDataset:
    """Preprocessed crystals of one file. ``dataset[i]`` is a PyG ``Data`` with frac_coords (N, 3),
    atom_types (N,) long, lengths (1, 3) Å, angles (1, 3) degrees, lattice (1, 3, 3) Å, num_atoms,
    num_nodes, y (1,) = the selected property (NaN when none) and material_id."""

    def __init__(self, records: Sequence[CrystalRecord], report: LoadReport, spec: DatasetSpec | None = None,
                 property: str | None = None, dtype=None):
        self.records = list(records)
        self.report = report
        self.spec = spec
        self.property = property
        self.dtype = dtype or torch.float32

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Data:
        r = self.records[index]
        value = r.properties.get(self.property, math.nan) if self.property else math.nan
        return Data(
            frac_coords=torch.as_tensor(r.frac_coords, dtype=self.dtype),
            atom_types=torch.as_tensor(r.atom_types, dtype=torch.long),
            lengths=torch.as_tensor(r.lengths, dtype=self.dtype).view(1, 3),
            angles=torch.as_tensor(r.angles, dtype=self.dtype).view(1, 3),
            lattice=torch.as_tensor(r.lattice, dtype=self.dtype).view(1, 3, 3),
            num_atoms=r.num_atoms, num_nodes=r.num_atoms,
            y=torch.tensor([value], dtype=self.dtype), material_id=r.material_id)

    def __repr__(self) -> str:
        name = self.spec.name if self.spec else self.report.source
        return f"CrystalDataset({name!r}, {len(self)} crystals, property={self.property!r})"


def load_dataset(name_or_path: str | Path, split: str | None = None, *, dtype=None, **options) -> CrystalDataset:
    """A dataset split (``"perov_5", "test"`` or ``"perov_5:test"``) or structure file as a
    :class:`CrystalDataset`; ``options`` as :func:`genlowdim.structures.datasets.load_records` (data_dir,
    niggli, max_atoms, strict, cache, workers, property)."""
    records, report, spec, prop = load_records(name_or_path, split, **options)
    return CrystalDataset(records, report, spec, prop, dtype)
