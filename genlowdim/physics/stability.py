"""Stability figures of generated crystals from their relaxation with a universal potential.

- :func:`rmsd_summary`: mean / median RMSD (Å) between a structure and its relaxed form, and the share
  within 0.1 Å (MatterGen reports the RMSD to the relaxed structure)
- :func:`energy_w1`: Wasserstein-1 distance (eV/atom) between generated and reference relaxed energies
- :func:`energy_above_lowest`: energy per atom above the lowest known polymorph of the same reduced
  composition (the reference entries relaxed with the same potential and settings). This is **not** an
  energy above the convex hull: competing phases of other compositions (elements, binaries) are absent,
  so a structure "stable" here may still decompose.
- :func:`sun_rate`: stable (≤ threshold above the lowest known polymorph, or below it) ∧ unique ∧ novel
- :func:`stability_block`: all of them for a set of structures, as ``evaluate`` would record them

Every result is a dict ``{"name", "value", "params"}`` (the shape of ``MetricResult.to_dict()``); a
composition without a reference entry is counted as "no reference", never guessed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["rmsd_summary", "energy_w1", "energy_above_lowest", "sun_rate", "stability_block",
           "stability_of_generated", "RMSD_THRESHOLD", "STABLE_THRESHOLD"]

RMSD_THRESHOLD = 0.1     # Å
STABLE_THRESHOLD = 0.1   # eV/atom above the lowest known polymorph (MatterGen's hull threshold)


def _result(name: str, value, **params) -> dict:
    value = None if value is None or not np.isfinite(value) else float(value)
    return {"name": name, "value": value, "params": params}


def _floats(values: Sequence) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def rmsd_summary(rmsd: Sequence[float | None], threshold: float = RMSD_THRESHOLD) -> dict:
    """``value``: share of all structures whose RMSD to their relaxed form (Å) is ≤ ``threshold``; a
    failed relaxation or an unmatched pair (None/NaN) counts as not within. params: mean and median over
    the structures that have an RMSD, and the counts."""
    r = _floats(rmsd)
    have = r[np.isfinite(r)]
    return _result("rmsd_within", np.mean(np.isfinite(r) & (r <= threshold)) if len(r) else None,
                   threshold_angstrom=threshold, mean_angstrom=float(have.mean()) if len(have) else None,
                   median_angstrom=float(np.median(have)) if len(have) else None, num_structures=len(r),
                   num_with_rmsd=int(len(have)))


def energy_w1(generated: Sequence[float | None], reference: Sequence[float | None]) -> dict:
    """Wasserstein-1 distance (eV/atom) between two sets of relaxed energies per atom (missing dropped)."""
    from scipy.stats import wasserstein_distance

    g, r = _floats(generated), _floats(reference)
    g, r = g[np.isfinite(g)], r[np.isfinite(r)]
    value = wasserstein_distance(g, r) if len(g) and len(r) else None
    return _result("energy_w1", value, unit="eV/atom", num_generated=int(len(g)), num_reference=int(len(r)))


def energy_above_lowest(formulas: Sequence[str], energies: Sequence[float | None],
                        lowest: dict[str, float]) -> np.ndarray:
    """(N,) energy per atom above ``lowest[formula]`` (eV/atom; negative = below every known polymorph);
    NaN where the structure has no energy or its reduced formula no reference."""
    e = _floats(energies)
    ref = np.array([lowest.get(f, np.nan) for f in formulas], dtype=float)
    return e - ref


def sun_rate(e_above: Sequence[float], unique: Sequence[bool] | None = None,
             novel: Sequence[bool] | None = None, threshold: float = STABLE_THRESHOLD) -> dict[str, dict]:
    """``stable``: share of all structures ≤ ``threshold`` eV/atom above their lowest known polymorph;
    ``sun``: share that is stable, unique and novel (None when a flag is missing). NaN ``e_above`` (no
    reference or failed relaxation) counts as not stable and is counted separately."""
    e = np.asarray(e_above, dtype=float)
    stable = np.isfinite(e) & (e <= threshold)
    counts = dict(threshold_ev_per_atom=threshold, num_structures=len(e), num_stable=int(stable.sum()),
                  num_no_reference_or_failed=int((~np.isfinite(e)).sum()))
    out = {"stable": _result("stable", stable.mean() if len(e) else None, **counts)}
    if unique is None or novel is None:
        out["sun"] = _result("sun", None, reason="unique and novel flags not given", **counts)
        return out
    sun = stable & np.asarray(unique, bool) & np.asarray(novel, bool)
    out["sun"] = _result("sun", sun.mean() if len(e) else None, num_sun=int(sun.sum()), **counts)
    return out


def stability_block(structures: Sequence, *, unique: Sequence[bool] | None = None,
                    novel: Sequence[bool] | None = None, dataset: str = "perov_5",
                    splits: Sequence[str] = ("train", "val", "test"), settings=None, potential=None,
                    results: Sequence | None = None, data_dir: str | None = None) -> dict:
    """The stability figures of ``structures`` (relaxed here unless their ``RelaxResult``s are given):
    RMSD to relaxed, energy W1 against the reference entries of the same compositions, share stable among
    the known polymorphs of ``dataset`` (all ``splits``), S.U.N.-style rate. Records the potential, the
    relaxation settings, the reference and the thresholds."""
    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.reference import reference_energies, remember_relaxed
    from genlowdim.physics.relax import RelaxSettings, relax_structures

    settings, potential = settings or RelaxSettings(), potential or load_potential()
    results = list(results) if results is not None else relax_structures(structures, settings, potential)
    remember_relaxed(structures, results, settings, potential)
    formulas = [s.composition.reduced_formula for s in structures]
    energies = [r.energy_final if r.error is None else None for r in results]
    reference = reference_energies(set(formulas), dataset, splits, settings, potential, data_dir=data_dir)
    lowest = {f: min(e for _, e in entries) for f, entries in reference.items() if entries}
    e_above = energy_above_lowest(formulas, energies, lowest)
    ref_energies = [e for f in sorted(set(formulas)) for _, e in reference.get(f, [])]
    block = {"rmsd_within": rmsd_summary([r.rmsd for r in results]),
             "energy_w1": energy_w1(energies, ref_energies), **sun_rate(e_above, unique, novel)}
    record = {"potential": potential.to_dict(), "relax_settings": settings.to_dict(),
              "reference": {"dataset": dataset, "splits": list(splits), "entries_used": len(ref_energies),
                            "what": "relaxed energies of every dataset entry of each generated composition"},
              "num_no_reference": int(sum(f not in lowest for f in formulas))}
    for figure in block.values():
        figure["params"].update(record)
    block["per_item"] = {"formula": formulas, "energy_per_atom": energies, "e_above_lowest": e_above.tolist(),
                         "rmsd_angstrom": [r.rmsd for r in results], "error": [r.error for r in results]}
    return block


def stability_of_generated(structures: Sequence, valid: Sequence[bool], duplicate_of: Sequence[int] | None,
                           novel: Sequence[bool] | None, results: Sequence | None = None, **options) -> dict:
    """:func:`stability_block` of an evaluation's crystals (``None`` = unbuildable, left out), with
    unique = valid and first of its duplicates (``duplicate_of < 0``) and novel = valid and novel.
    results: the ``RelaxResult``s of all N inputs in order (e.g. a finished relax folder), else relaxed
    here; options: :func:`stability_block`'s keywords."""
    keep = [i for i, s in enumerate(structures) if s is not None]
    valid = np.asarray(valid, bool)
    unique = None if duplicate_of is None else (valid & (np.asarray(duplicate_of) < 0))[keep]
    novel = None if novel is None else (valid & np.asarray(novel, bool))[keep]
    if results is not None and len(results) != len(structures):
        raise ValueError(f"{len(results)} relaxation results for {len(structures)} structures: relax the "
                         "same input that is evaluated")
    block = stability_block([structures[i] for i in keep], unique=unique, novel=novel,
                            results=None if results is None else [results[i] for i in keep], **options)
    block["per_item"]["index"] = keep
    return block
