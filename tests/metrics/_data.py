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
