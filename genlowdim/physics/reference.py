"""Relaxed energies of a dataset's entries, grouped by reduced composition and cached by content hash.

The reference of "the lowest known polymorph" of a composition is every entry of that reduced formula in
the dataset's splits, relaxed with the same potential and settings as the generated crystals. Each entry's
relaxed energy per atom is stored once under ``<cache dir>/physics/<settings key>/<structure hash>.json``
(``$GENLOWDIM_CACHE_DIR`` or ``~/.cache/genlowdim``, as the dataset cache): the structure hash covers the
species, cell and coordinates (rounded to 1e-6), the settings key the potential, its weights and the
relaxation settings. Only the compositions asked for are relaxed.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from genlowdim.runtime import cache_dir, write_json

__all__ = ["reference_energies", "remember_relaxed", "structure_hash", "entries_by_formula"]


def structure_hash(structure) -> str:
    """sha256 of a structure's species, lattice (Å) and fractional coordinates, rounded to 1e-6."""
    text = (f"{[sp.symbol for sp in structure.species]}|{structure.lattice.matrix.round(6).tolist()}|"
            f"{structure.frac_coords.round(6).tolist()}")
    return hashlib.sha256(text.encode()).hexdigest()


def _settings_dir(settings, potential) -> Path:
    key = json.dumps({"potential": potential.to_dict(), "settings": settings.to_dict()}, sort_keys=True)
    return cache_dir() / "physics" / hashlib.sha256(key.encode()).hexdigest()[:24]


def entries_by_formula(dataset: str, splits: Sequence[str], formulas: Iterable[str],
                       data_dir: str | None = None) -> dict[str, list[tuple[str, object]]]:
    """``{reduced formula: [(\"split:id\", Structure), ...]}`` of the dataset entries with those formulas
    (the structures as ``load_structures`` gives them: Niggli-reduced, as the models see them)."""
    from genlowdim.structures.datasets import load_structures

    wanted, out = set(formulas), defaultdict(list)
    for split in splits:
        ids, structures = load_structures(dataset, split, data_dir=data_dir)
        for i, s in zip(ids, structures):
            formula = s.composition.reduced_formula
            if formula in wanted:
                out[formula].append((f"{split}:{i}", s))
    return dict(out)


def _cached(folder: Path, digest: str) -> float | None:
    try:
        return float(json.loads((folder / f"{digest}.json").read_text())["energy_per_atom"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(folder: Path, structure, result) -> None:
    write_json(folder / f"{structure_hash(structure)}.json",
               {"energy_per_atom": result.energy_final, "converged": result.converged, "steps": result.steps,
                "formula": structure.composition.reduced_formula})


def remember_relaxed(structures: Sequence, results: Sequence, settings, potential) -> None:
    """Store relaxations already done with these settings in the cache, so that a structure that is also a
    dataset entry (the test set evaluated as if generated) is not relaxed again as a reference."""
    folder = _settings_dir(settings, potential)
    for structure, result in zip(structures, results):
        if result.error is None and _cached(folder, structure_hash(structure)) is None:
            _store(folder, structure, result)


def reference_energies(formulas: Iterable[str], dataset: str = "perov_5",
                       splits: Sequence[str] = ("train", "val", "test"), settings=None, potential=None,
                       data_dir: str | None = None) -> dict[str, list[tuple[str, float]]]:
    """``{reduced formula: [(\"split:id\", relaxed energy per atom in eV), ...]}`` for each formula with
    dataset entries (a formula without entries is absent). Entries whose relaxation fails are left out.
    Relaxes, and caches, only what the cache lacks."""
    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.relax import RelaxSettings, relax_structures

    settings, potential = settings or RelaxSettings(), potential or load_potential()
    folder = _settings_dir(settings, potential)
    entries = entries_by_formula(dataset, splits, formulas, data_dir)
    flat = [(f, name, s, structure_hash(s)) for f, items in entries.items() for name, s in items]
    energies = {digest: _cached(folder, digest) for _, _, _, digest in flat}
    todo = [(s, digest) for _, _, s, digest in flat if energies[digest] is None]
    step = settings.batch_size
    for start in range(0, len(todo), step):  # stored batch by batch: a stopped run keeps what it finished
        part = todo[start:start + step]
        for (s, digest), result in zip(part, relax_structures([s for s, _ in part], settings, potential)):
            if result.error is None:
                energies[digest] = result.energy_final
                _store(folder, s, result)
    out: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for formula, name, _, digest in flat:
        if energies[digest] is not None:
            out[formula].append((name, energies[digest]))
    return dict(out)
