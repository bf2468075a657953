"""CSP candidates judged by physics: each candidate relaxed with CHGNet (cell and positions) and the
candidates of each formula re-ranked by relaxed energy per atom (:func:`genlowdim.physics.ranking.
rank_by_energy`: candidates within ``margin`` eV/atom keep the model's formula-NLL order). Also the cell
description of every candidate (lattice, volume per atom, space group at a stated ``symprec``) and its
symmetrised CIF beside the P1 one.

Outputs of :func:`relax_candidates` in ``out_dir/relaxed/``: the merged file's name (``candidates.extxyz`` or
``predictions.extxyz``) holding the relaxed candidates, best first per formula, with ``energy_per_atom``,
``nll_rank`` (the model's rank) and ``rmsd_to_initial`` per frame; with CIFs, ``cif/`` and
``cif_symmetrized/``. The settings, potential and margin go into ``manifest.json`` under ``relax``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from genlowdim.runtime import write_json
from genlowdim.structures.symmetry import SYMPREC, cell_summary, write_symmetrized_cifs

__all__ = ["describe_candidates", "relax_candidates", "group_of", "RANKING_TEXT"]

RANKING_TEXT = {
    "energy": "relaxed energy per atom; within the margin the formula-NLL order is kept",
    "arrangement": "by arrangement: among the highest point-group order the lowest relaxed energy names an "
                   "arrangement, followed by every candidate StructureMatcher (stol 0.5, ltol 0.3, angle_tol 10, "
                   "no scaling) finds to be it, lowest energy first; then the same on the rest; within the "
                   "margin the formula-NLL order is kept"}


def group_of(candidate_id: str, ranked_ids: bool) -> str:
    """The formula a candidate belongs to: ``<name>_<rank:03d>`` drops its rank; otherwise the id itself."""
    return re.sub(r"_\d{3}$", "", candidate_id) if ranked_ids else candidate_id


def describe_candidates(structures: Sequence, names: Sequence[str], folder: Path | None = None,
                        symprec: float = SYMPREC) -> list[dict]:
    """Each candidate's :func:`cell_summary` (with its ``name``); with ``folder``, its symmetrised CIF
    ``folder/cif_symmetrized/<name>.cif``."""
    if folder is not None:
        write_symmetrized_cifs(structures, names, Path(folder) / "cif_symmetrized", symprec)
    return [{"name": n, **cell_summary(s, symprec)} for s, n in zip(structures, names)]


def _ranked_groups(ids: Sequence[str], energies: Sequence[float | None], ranked_ids: bool,
                   margin: float, relaxed: Sequence | None = None, symprec: float = SYMPREC) -> list[int]:
    """Candidate indices, formula by formula (first appearance), each formula's best first: by energy
    alone, or with ``relaxed`` (the relaxed structures) by arrangement (:func:`genlowdim.physics.ranking.
    rank_by_arrangement`: point groups at ``symprec``, one structure by CDVAE's matcher tolerances)."""
    from genlowdim.physics.ranking import rank_by_arrangement, rank_by_energy

    groups: dict[str, list[int]] = {}
    for k, i in enumerate(ids):
        groups.setdefault(group_of(i, ranked_ids), []).append(k)
    if relaxed is None:
        return [members[j] for members in groups.values()
                for j in rank_by_energy([energies[m] for m in members], margin)]
    from genlowdim.metrics.matcher import CDVAE_TOLERANCES
    from genlowdim.structures.symmetry import point_group_order

    matcher = CDVAE_TOLERANCES.unscaled().matcher()
    order = []
    for members in groups.values():
        cells = [relaxed[m] for m in members]
        orders = [1 if c is None else point_group_order(c, symprec) for c in cells]
        order += [members[j] for j in rank_by_arrangement([energies[m] for m in members], orders,
                                                          lambda a, b: matcher.fit(cells[a], cells[b]), margin)]
    return order


def _new_names(ids: Sequence[str], order: list[int], ranked_ids: bool) -> list[str]:
    if not ranked_ids:
        return [ids[k] for k in order]
    seen: dict[str, int] = {}
    names = []
    for k in order:
        g = group_of(ids[k], True)
        names.append(f"{g}_{seen.setdefault(g, 0):03d}")
        seen[g] += 1
    return names


def relax_candidates(out_dir: str | Path, merged: str = "candidates.extxyz", *, ranked_ids: bool = True,
                     settings=None, margin: float | None = None, symprec: float = SYMPREC,
                     ranking: str = "arrangement") -> dict:
    """Relax the candidates in ``out_dir/merged`` and write them re-ranked to ``out_dir/relaxed/`` (module
    docstring). Returns the ``relax`` record (also added to ``manifest.json``) with ``candidates``: per
    relaxed candidate, best first, its name, model rank, energies, RMSD and cell. ``ranking``:
    'arrangement' (:func:`genlowdim.physics.ranking.rank_by_arrangement`) or 'energy' (by energy alone)."""
    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.ranking import RANKINGS, TIE_MARGIN
    from genlowdim.physics.relax import RelaxSettings, relax_structures
    from genlowdim.runtime import progress
    from genlowdim.structures.io import read_structures, write_cif, write_extxyz

    if ranking not in RANKINGS:
        raise ValueError(f"ranking {ranking!r}: expected one of {RANKINGS}")
    out_dir, margin = Path(out_dir), TIE_MARGIN if margin is None else margin
    settings, potential = settings or RelaxSettings(), load_potential()
    pairs = read_structures(out_dir / merged)
    ids, initial = [i for i, _ in pairs], [s for _, s in pairs]
    bar = progress(total=len(initial), desc="relaxing candidates", unit="candidate")
    results = relax_structures(initial, settings, potential, on_batch=bar.update)
    bar.close()
    order = _ranked_groups(ids, [r.energy_final if r.error is None else None for r in results], ranked_ids,
                           margin, [r.relaxed for r in results] if ranking == "arrangement" else None, symprec)
    names = _new_names(ids, order, ranked_ids)
    # a failed relaxation keeps its candidate as decoded (ranked last, energy NaN) so no formula is lost
    final = [results[k].relaxed if results[k].relaxed is not None else initial[k] for k in order]
    model_rank = [_model_rank(ids, k, ranked_ids) for k in order]
    folder = out_dir / "relaxed"
    folder.mkdir(parents=True, exist_ok=True)
    write_extxyz(final, folder / merged, ids=names, info={
        "energy_per_atom": [_nan(results[k].energy_final) for k in order], "nll_rank": model_rank,
        "rmsd_to_initial": [_nan(results[k].rmsd) for k in order]})
    cells = describe_candidates(final, names, folder if ranked_ids else None, symprec)
    if ranked_ids:
        write_cif(final, folder / "cif", ids=names)
    rows = [{**cell, "nll_rank": model_rank[j], **results[k].to_record()} for j, (k, cell) in
            enumerate(zip(order, cells))]
    record = {"settings": settings.to_dict(), "potential": potential.to_dict(), "tie_margin_ev_per_atom": margin,
              "ranking": RANKING_TEXT[ranking],
              "output": str(Path("relaxed") / merged), "num_failed": sum(r.error is not None for r in results),
              "num_converged": sum(r.converged for r in results), "symprec": symprec}
    _add_to_manifest(out_dir, record)
    return {**record, "candidates": rows}


def _model_rank(ids: Sequence[str], k: int, ranked_ids: bool) -> int:
    if ranked_ids:
        return int(ids[k].rsplit("_", 1)[1])
    return sum(1 for j in range(k) if ids[j] == ids[k])


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _add_to_manifest(out_dir: Path, record: dict) -> None:
    path = out_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    write_json(path, {**manifest, "relax": record})


def relaxed_lines(record: dict, out_dir: str | Path, per_candidate: bool = True) -> list[str]:
    """What ``csp --relax`` prints: counts, then per candidate (best first) its cell, relaxed energy per
    atom and the model's rank."""
    from genlowdim.structures.symmetry import format_cell

    rows = record["candidates"]
    lines = [f"relaxed {len(rows)} candidates with {record['potential']['potential']} "
             f"({record['num_converged']} converged, {record['num_failed']} failed) into {out_dir}/relaxed/, "
             f"ranked by relaxed energy per atom (ties within {record['tie_margin_ev_per_atom']} eV/atom keep "
             f"the model's order); {record['settings']['constraint'] or 'free cell and positions'}"]
    for row in rows if per_candidate else []:
        energy = row["energy_per_atom_final"]
        lines.append(f"  {format_cell(row['name'], row)}, "
                     f"{'failed: ' + str(row['error']) if energy is None else f'{energy:.4f} eV/atom'}, "
                     f"model rank {row['nll_rank']}")
    return lines
