"""Small perov_5 subsets read straight from the shipped CSV (first rows only, so tests stay fast)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEROV_TEST = ROOT / "datasets" / "perov_5" / "test.csv.gz"


@lru_cache(maxsize=4)
def perov_structures(n: int, skip: int = 0) -> tuple:
    """Rows skip..skip+n of perov_5/test as pymatgen Structures (a tuple, so it can be cached)."""
    import pandas as pd
    from pymatgen.core import Structure

    frame = pd.read_csv(PEROV_TEST, nrows=skip + n)
    return tuple(Structure.from_str(c, fmt="cif") for c in frame["cif"].iloc[skip:skip + n])

CARBON = ROOT / "datasets" / "carbon_24"


@lru_cache(maxsize=4)
def carbon_structures(split: str, n: int | None = None) -> tuple:
    """The first n crystals of carbon_24's split as the evaluation reads them (Niggli, canonical lattice)."""
    from genlowdim.structures.datasets import load_structures

    return tuple(load_structures(f"carbon_24:{split}")[1][:n])


def equivalent_copy(structure, rng):
    """The same crystal written differently: a random unimodular cell choice (det +1 integer matrix), a
    random translation of every site and a random site order. The StructureMatcher must match it to the
    original; rng: ``numpy.random.Generator``."""
    import numpy as np
    from pymatgen.core import Structure

    matrix = np.eye(3, dtype=int)
    for _ in range(3):  # a product of integer shears and a cyclic axis permutation has det +1
        shear = np.eye(3, dtype=int)
        i, j = rng.choice(3, 2, replace=False)
        shear[i, j] = rng.choice([-1, 1])
        matrix = shear @ matrix
    matrix = np.roll(matrix, int(rng.integers(3)), axis=0)
    copy = structure.copy()
    copy.make_supercell(matrix)
    copy.translate_sites(list(range(len(copy))), rng.random(3), frac_coords=True, to_unit_cell=True)
    order = rng.permutation(len(copy))
    return Structure.from_sites([copy[int(k)] for k in order])


def perov_with_copies(n: int, copies: int, seed: int = 0) -> list:
    """perov_5 test rows 0..n-1 followed by ``copies`` equivalent copies of randomly chosen ones (known
    duplicates), in a seeded shuffled order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = list(perov_structures(n))
    out = base + [equivalent_copy(base[int(k)], rng) for k in rng.integers(n, size=copies)]
    return [out[int(k)] for k in rng.permutation(len(out))]
