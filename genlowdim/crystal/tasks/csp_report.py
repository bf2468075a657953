"""What each CSP candidate is, beside the nearest known crystal: its cell (lattice, volume per atom, space group
at a stated ``symprec``) and the **nearest training entry of the same reduced formula** with its cell.

Rule for the nearest entry: among the training crystals of the candidate's reduced formula, the one the
protocol's matcher matches (CDVAE's ``StructureMatcher``, volumes scaled; the smallest RMS when several
match); when none matches, the one closest in volume per atom. Either way the candidate's volume-per-atom
error against it is given, which the scaled matcher does not see. ``candidates.json`` holds it all (the
P1 CIFs, ``candidates.extxyz`` and the manifest are left as they are).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

from genlowdim.metrics.cell_size import volume_per_atom_error
from genlowdim.metrics.matcher import CDVAE_TOLERANCES, MatchTolerances
from genlowdim.structures.symmetry import SYMPREC, cell_summary, format_cell

__all__ = ["RULE", "training_records", "training_entries", "nearest_training_entry", "describe_with_training",
           "candidate_report"]

RULE = ("the training crystal of the same reduced formula that the matcher matches (smallest RMS), else the "
        "one closest in volume per atom")
REPORT_NAME = "candidates.json"


def _reduced_formula(atom_types) -> str:
    from pymatgen.core import Composition

    counts: dict = defaultdict(int)
    for z in atom_types:
        counts[int(z)] += 1
    return Composition({_symbol(z): n for z, n in counts.items()}).reduced_formula


def _symbol(z: int) -> str:
    from pymatgen.core import Element

    return Element.from_Z(z).symbol


def training_records(cfg) -> list:
    """The crystals the model was trained on: its config's training split (``CrystalRecord``), the first
    ``data.train_limit`` when set."""
    from genlowdim.crystal.cdvae.training import load_split_dataset

    records = load_split_dataset(cfg, "train").records
    return records[:cfg.data.train_limit] if cfg.data.train_limit else records


def training_entries(records: Sequence, formulas: set[str]) -> dict[str, list[tuple[str, object]]]:
    """Reduced formula -> [(material id, Structure)] of the training ``records`` (``CrystalRecord``) whose
    reduced formula is one of ``formulas``."""
    found: dict[str, list] = defaultdict(list)
    for r in records:
        f = _reduced_formula(r.atom_types)
        if f in formulas:
            found[f].append((str(r.material_id), r.to_structure()))
    return dict(found)


def nearest_training_entry(candidate, entries: Sequence[tuple[str, object]],
                           tolerances: MatchTolerances = CDVAE_TOLERANCES, symprec: float = SYMPREC) -> dict | None:
    """The nearest of ``entries`` (same reduced formula) by the module's rule: ``material_id``, ``rule``
    (``matched`` or ``closest volume per atom``), ``rms_dist`` (None unless matched), the entry's
    :func:`cell_summary` and ``vpa_error`` (the candidate's volume per atom relative to the entry's, minus 1).
    None without entries."""
    if not entries:
        return None
    m = tolerances.matcher()
    matches = []
    for k, (_, s) in enumerate(entries):
        try:
            rms = m.get_rms_dist(candidate, s)
        except Exception:  # noqa: BLE001 - a matcher failure is no match, as in the metrics
            rms = None
        if rms is not None:
            matches.append((float(rms[0]), k))
    if matches:
        rms, k = min(matches)
        rule = "matched"
    else:
        k = min(range(len(entries)), key=lambda j: abs(volume_per_atom_error(candidate, entries[j][1])))
        rms, rule = None, "closest volume per atom"
    material_id, entry = entries[k]
    return {"material_id": material_id, "rule": rule, "rms_dist": rms, **cell_summary(entry, symprec),
            "vpa_error": volume_per_atom_error(candidate, entry)}


def describe_with_training(structures: Sequence, names: Sequence[str], training: dict, *,
                           symprec: float = SYMPREC, tolerances: MatchTolerances = CDVAE_TOLERANCES) -> list[dict]:
    """Per candidate: ``name``, its :func:`cell_summary` and ``nearest_training`` (None when no training
    crystal has its reduced formula). training: :func:`training_entries`."""
    rows = []
    for s, name in zip(structures, names):
        entries = training.get(s.composition.reduced_formula, [])
        rows.append({"name": name, **cell_summary(s, symprec),
                     "nearest_training": nearest_training_entry(s, entries, tolerances, symprec)})
    return rows


def _nearest_line(near: dict | None, training_size: int) -> str:
    if near is None:
        return f"    no training crystal (of {training_size:,}) has this reduced formula"
    rms = f", RMS {near['rms_dist']:.3f}" if near["rms_dist"] is not None else ""
    return (f"    nearest training entry ({near['rule']}{rms}; candidate volume per atom "
            f"{near['vpa_error']:+.1%}) {format_cell(near['material_id'], near)}")


def candidate_report(out_dir: str | Path, records: Sequence, *, symprec: float = SYMPREC,
                     tolerances: MatchTolerances = CDVAE_TOLERANCES) -> list[str]:
    """Describe ``out_dir/candidates.extxyz`` against the training ``records``: write ``candidates.json`` and
    the symmetrised CIFs (``cif_symmetrized/``), and return the printed lines (each candidate's cell, then its
    nearest training entry)."""
    from genlowdim.runtime import write_json
    from genlowdim.structures.io import read_structures
    from genlowdim.structures.symmetry import write_symmetrized_cifs

    pairs = read_structures(Path(out_dir) / "candidates.extxyz")
    structures, names = [s for _, s in pairs], [i for i, _ in pairs]
    write_symmetrized_cifs(structures, names, Path(out_dir) / "cif_symmetrized", symprec)
    training = training_entries(records, {s.composition.reduced_formula for s in structures})
    rows = describe_with_training(structures, names, training, symprec=symprec, tolerances=tolerances)
    write_json(Path(out_dir) / REPORT_NAME, {"symprec": symprec, "nearest_training_rule": RULE,
                                             "tolerances": tolerances.to_dict(), "num_training": len(records),
                                             "candidates": rows})
    lines = []
    for row in rows:
        lines += ["  " + format_cell(row["name"], row), _nearest_line(row["nearest_training"], len(records))]
    return lines
