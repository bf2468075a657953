"""Known crystal datasets: the CDVAE benchmark splits (Xie et al., ICLR 2022; txie-93/cdvae, MIT).

Each dataset is a folder ``<name>/{train,val,test}.csv(.gz)`` of CDVAE-format CSVs: a ``cif`` column of P1
CIFs, a ``material_id`` column and property columns. Only perov_5 ships with the package (``datasets/``);
the others are read from a data directory (``--data-dir``, ``data_dir=`` or ``GENLOWDIM_DATA_DIR``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DatasetSpec", "DATASETS", "get_spec", "UnknownDatasetError"]


class UnknownDatasetError(KeyError):
    """A dataset name that is not registered (a KeyError whose message reads cleanly)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DatasetSpec:
    """What we know about one benchmark dataset.

    splits: expected rows per split (CDVAE's files; mp_20/mpts_52 counts are approximate);
    property: the column models predict/optimise (eV/atom); properties: all numeric property columns;
    max_atoms: largest cell in the dataset; cov_thresholds: (δ_struct, δ_comp) of CDVAE's coverage metric
    (``COV_Cutoffs`` in CDVAE's ``scripts/compute_metrics.py``); sr_percentiles: the 5th/10th/15th percentiles
    of the dataset's property, the thresholds of the optimisation success rates SR5/SR10/SR15
    (``Percentiles`` in the same script; None where CDVAE gives none);
    shipped: whether the package carries the files under ``datasets/<name>/``;
    units: the unit of each property column (:meth:`unit`), for axis labels and output columns.
    """

    name: str
    splits: dict
    property: str
    properties: tuple
    max_atoms: int
    cov_thresholds: tuple
    shipped: bool
    citation: str
    provenance: str
    cif_column: str = "cif"
    min_atoms: int = 1
    approximate_counts: bool = False
    sr_percentiles: tuple | None = None
    extra: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)

    def unit(self, column: str | None = None) -> str | None:
        """The unit of property ``column`` (default: :attr:`property`); None when not recorded."""
        return self.units.get(self.property if column is None else column)


_CDVAE = ("Xie, Fu, Ganea, Barzilay, Jaakkola, 'Crystal Diffusion Variational Autoencoder for Periodic "
          "Material Generation', ICLR 2022; data and splits from github.com/txie-93/cdvae (MIT)")

DATASETS: dict[str, DatasetSpec] = {
    "perov_5": DatasetSpec(
        name="perov_5", splits={"train": 11356, "val": 3787, "test": 3785}, property="heat_ref",
        properties=("heat_ref", "heat_all", "dir_gap", "ind_gap"), max_atoms=5, min_atoms=5,
        units={"heat_ref": "eV/atom", "heat_all": "eV/atom", "dir_gap": "eV", "ind_gap": "eV"},
        cov_thresholds=(0.2, 4.0), shipped=True, sr_percentiles=(0.4392, 0.6120, 0.7365),
        citation=_CDVAE + "; Castelli et al., Energy Environ. Sci. 5, 9034 (2012)",
        provenance="cubic perovskites ABX3 from DTU's Computational Materials Repository (Castelli et al.)"),
    "carbon_24": DatasetSpec(
        name="carbon_24", splits={"train": 6091, "val": 2032, "test": 2030}, property="energy_per_atom",
        properties=("energy_per_atom",), max_atoms=24, min_atoms=6, cov_thresholds=(0.2, 4.0),
        units={"energy_per_atom": "eV/atom"},
        sr_percentiles=(-154.5271, -154.4587, -154.4421),
        shipped=False, citation=_CDVAE + "; Pickard, AIRSS data for carbon at 10 GPa, Materials Cloud "
        "Archive 2020.0026",
        provenance="carbon structures from ab initio random structure searching at 10 GPa"),
    "mp_20": DatasetSpec(
        name="mp_20", splits={"train": 27136, "val": 9047, "test": 9046}, property="formation_energy_per_atom",
        properties=("formation_energy_per_atom", "band_gap", "e_above_hull"),
        units={"formation_energy_per_atom": "eV/atom", "band_gap": "eV", "e_above_hull": "eV/atom"},
        max_atoms=20, cov_thresholds=(0.4, 10.0), shipped=False, approximate_counts=True,
        sr_percentiles=(-3.1756, -2.8220, -2.5281),
        citation=_CDVAE + "; Jain et al., APL Mater. 1, 011002 (2013) (Materials Project, CC-BY-4.0)",
        provenance="Materials Project crystals with at most 20 atoms per cell"),
    "mpts_52": DatasetSpec(
        name="mpts_52", splits={"train": 27380, "val": 5000, "test": 8096},
        property="formation_energy_per_atom",
        properties=("formation_energy_per_atom", "band_gap", "e_above_hull"),
        units={"formation_energy_per_atom": "eV/atom", "band_gap": "eV", "e_above_hull": "eV/atom"},
        max_atoms=52, cov_thresholds=(0.4, 10.0), shipped=False, approximate_counts=True,
        citation="Baird et al., 'MPTS-52', Matbench-genmetrics (2022); Jain et al., APL Mater. 1, 011002 "
                 "(2013) (Materials Project, CC-BY-4.0)",
        provenance="Materials Project crystals with at most 52 atoms, split by time"),
}


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``; a ``KeyError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))} "
                       f"(or pass a path to a CSV/CIF/extxyz/JSON file or folder)") from None
