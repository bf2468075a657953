"""A small folder of CIFs to import: perov_5 and carbon_24 rows plus one file of each kind the import must
drop (garbage, partial occupancy, too many atoms, a duplicate)."""
from __future__ import annotations

from pathlib import Path

from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter

from genlowdim.structures.datasets import repo_datasets_dir
from genlowdim.structures.io import entry_to_structure, read_entries

# file stem -> the reason the import must give for dropping it
BROKEN = {"garbage": "unparseable", "half_occupied": "disordered", "supercell_60_atoms": "too many atoms",
          "perov_0_copy": "duplicate"}


def dataset_rows(name: str, split: str, num: int) -> list[tuple[str, Structure]]:
    """The first ``num`` rows of a shipped split as (material_id, Structure)."""
    entries = read_entries(repo_datasets_dir() / name / f"{split}.csv.gz")[:num]
    return [(e.material_id, entry_to_structure(e)) for e in entries]


def write_source_folder(folder: Path, num_perov: int = 6, num_carbon: int = 4) -> dict[str, Structure]:
    """Write ``perov_<k>.cif``, ``carbon_<k>.cif`` and the :data:`BROKEN` files into ``folder``; returns the
    good structures by file stem."""
    folder.mkdir(parents=True, exist_ok=True)
    good = {f"perov_{k}": s for k, (_, s) in enumerate(dataset_rows("perov_5", "test", num_perov))}
    good.update({f"carbon_{k}": s for k, (_, s) in enumerate(dataset_rows("carbon_24", "test", num_carbon))})
    for stem, structure in good.items():
        (folder / f"{stem}.cif").write_text(str(CifWriter(structure)))
    (folder / "garbage.cif").write_text("this is not a crystal\n")
    disordered = good["perov_0"].copy()
    disordered.replace(0, {disordered[0].specie.symbol: 0.5, "Ba": 0.5})
    (folder / "half_occupied.cif").write_text(str(CifWriter(disordered)))
    (folder / "supercell_60_atoms.cif").write_text(str(CifWriter(good["perov_1"] * (3, 2, 2))))
    copy = good["perov_0"] * (2, 1, 1)          # the same crystal in a doubled cell, shifted
    copy.translate_sites(list(range(len(copy))), [0.13, 0.05, 0.2])
    (folder / "perov_0_copy.cif").write_text(str(CifWriter(copy)))
    return good
