"""Compositional validity, CDVAE's ``smact_validity``, over SMACT 2.2.1's pinned oxidation-state table.

For a composition with element counts n_i (divided by their gcd):

1. one element -> valid; 2. every element in SMACT's ``metals`` list -> valid (alloy);
3. otherwise valid iff some choice of oxidation states q_i (one per element, from the table) is
   charge-neutral, sum_i q_i n_i = 0, and passes the Pauling test: no cation is at least as
   electronegative as an anion (pairs taken in atomic-number order).

The table, the Pauling electronegativities and the ``metals`` list are SMACT 2.2.1's (the version CDVAE
pinned), stored in ``data/smact_oxidation_states_2_2_1.json`` with the source files' SHA-256. SMACT 4.x
changed the default oxidation states (ICSD-24: e.g. Na [1] instead of [-1, 1]) and fixed Ir (-3 instead of
-2), so results from the installed SMACT drift; see docs/metrics.md for measured differences.

SMACT 2.2.1's Pauling test meets a missing electronegativity (He, Ne, Ar, Pm, Rn, Lr) in one of two ways,
reproduced here: in a cation/anion pair the comparison raises ``TypeError``, which CDVAE catches and
treats as a pass for the whole combination; in any other pair it returns a failure.
"""
from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from itertools import combinations
from math import gcd
from pathlib import Path
from typing import Sequence

import numpy as np

from genlowdim.metrics.result import MetricResult, versions

TABLE_FILE = Path(__file__).parent / "data" / "smact_oxidation_states_2_2_1.json"


@lru_cache(maxsize=1)
def smact_table() -> dict:
    """``{"ox": {symbol: [states] | None}, "eneg": {symbol: float | None}, "Z": {...}, "metals": set}``."""
    raw = json.loads(TABLE_FILE.read_text())
    elements = raw["elements"]
    return {"ox": {e["symbol"]: e["oxidation_states"] for e in elements},
            "eneg": {e["symbol"]: e["pauling_eneg"] for e in elements},
            "Z": {e["symbol"]: e["Z"] for e in elements},
            "metals": frozenset(raw["metals"]), "source": raw["source"]}


def reduced_composition(structure) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Element symbols sorted by atomic number and their counts divided by the gcd (as CDVAE does)."""
    counter = Counter(site.specie.symbol for site in structure)
    from pymatgen.core import Element

    symbols = tuple(sorted(counter, key=lambda s: Element(s).Z))
    counts = [counter[s] for s in symbols]
    g = 0
    for c in counts:
        g = gcd(g, c)
    return symbols, tuple(c // g for c in counts)


def pauling_pass(ox_states: Sequence[int], enegs: Sequence[float | None]) -> bool:
    """SMACT 2.2.1 ``eneg_states_test`` as CDVAE calls it (``TypeError`` -> pass), pairs in order."""
    for (q1, e1), (q2, e2) in combinations(zip(ox_states, enegs), 2):
        if q1 > 0 and q2 < 0:
            if e1 is None or e2 is None:
                return True  # comparison with None raised TypeError -> CDVAE accepts
            if e1 >= e2:
                return False
        elif q1 < 0 and q2 > 0:
            if e1 is None or e2 is None:
                return True
            if e1 <= e2:
                return False
        elif e1 is None or e2 is None:
            return False
    return True


def _neutral_combinations(ox_lists: list[list[int]], counts: Sequence[int]) -> np.ndarray:
    """All oxidation-state choices (rows, one column per element) with sum_i q_i n_i = 0."""
    grids = np.meshgrid(*[np.asarray(q, dtype=np.int64) for q in ox_lists], indexing="ij")
    combos = np.stack([g.ravel() for g in grids], axis=1)  # (prod len, n_elements), itertools order
    charge = combos @ np.asarray(counts, dtype=np.int64)
    return combos[charge == 0]


@lru_cache(maxsize=65536)
def smact_valid(symbols: tuple[str, ...], counts: tuple[int, ...], use_pauling_test: bool = True,
                include_alloys: bool = True) -> bool:
    """CDVAE ``smact_validity`` over the pinned table. symbols sorted by Z, counts reduced by the gcd."""
    table = smact_table()
    unknown = [s for s in symbols if s not in table["ox"] or table["ox"][s] is None]
    if len(set(symbols)) == 1:
        return True
    if include_alloys and all(s in table["metals"] for s in symbols):
        return True
    if unknown:  # SMACT 2.2.1 has no element data for these (CDVAE would raise)
        return False
    ox_lists = [table["ox"][s] for s in symbols]
    if any(len(q) == 0 for q in ox_lists):  # noble gases: no oxidation state -> no combination
        return False
    enegs = [table["eneg"][s] for s in symbols]
    for combo in _neutral_combinations(ox_lists, counts):
        if not use_pauling_test or pauling_pass(combo.tolist(), enegs):
            return True
    return False


def compositional_validity(structures: Sequence, use_pauling_test: bool = True,
                           include_alloys: bool = True) -> MetricResult:
    """CDVAE ``comp_valid``: fraction of structures whose composition passes ``smact_valid``.

    structures: N pymatgen ``Structure`` objects (``None`` counts as invalid).
    per_item: ``valid: (N,) bool``, ``formula: (N,) str``.
    """
    valid, formulas = [], []
    for s in structures:
        if s is None or len(s) == 0:
            valid.append(False)
            formulas.append("")
            continue
        symbols, counts = reduced_composition(s)
        valid.append(smact_valid(symbols, counts, use_pauling_test, include_alloys))
        formulas.append("".join(f"{e}{c if c > 1 else ''}" for e, c in zip(symbols, counts)))
    valid_arr = np.array(valid, dtype=bool)
    params = {"oxidation_state_table": "SMACT 2.2.1 Element.oxidation_states (pinned)",
              "table_file": TABLE_FILE.name, "use_pauling_test": use_pauling_test,
              "include_alloys": include_alloys, "num_structures": len(structures),
              "num_valid": int(valid_arr.sum()), "versions": versions()}
    value = float(valid_arr.mean()) if len(valid_arr) else None
    return MetricResult("comp_valid", value, params,
                        {"valid": valid_arr, "formula": np.array(formulas, dtype=object)})


def installed_smact_valid(symbols: Sequence[str], counts: Sequence[int],
                          oxidation_states_set: str = "smact14") -> bool:
    """The same rule evaluated with the installed SMACT (4.x API), for comparison only.

    ``oxidation_states_set='smact14'`` is SMACT's original table (equal to 2.2.1's except Ir);
    ``'icsd24'`` is SMACT 4.x's default.
    """
    from smact.screening import smact_validity

    formula = "".join(f"{e}{c}" for e, c in zip(symbols, counts))
    return bool(smact_validity(formula, use_pauling_test=True, include_alloys=True,
                               oxidation_states_set=oxidation_states_set))
