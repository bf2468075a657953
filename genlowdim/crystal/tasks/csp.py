"""Crystal structure prediction (CSP) written to disk: candidates for one formula, or the benchmark over a
split's compositions, batch by batch on :class:`~genlowdim.crystal.runs.BatchRun` (resumable, shared between
``torchrun`` processes), for any model of the contract (:mod:`genlowdim.crystal.contract`). How a model
proposes candidates is its own (CDVAE: :mod:`genlowdim.crystal.cdvae.csp`).
"""
from __future__ import annotations

import torch

from genlowdim.crystal.contract import CrystalModel
from genlowdim.crystal.geometry.encoder import MAX_ATOMIC_NUM
from genlowdim.crystal.runs import BatchRun, item_id, model_device
from genlowdim.errors import UsageError
from genlowdim.runtime import library_versions, write_json

__all__ = ["parse_formula", "write_candidates", "run_csp", "csp_formula", "csp_split"]


def parse_formula(text: str, max_atoms: int) -> torch.Tensor:
    """Atom types (N,) of a cell formula such as ``SrTiO3`` (the formula as written is the cell content),
    sorted atomic numbers. Raises UsageError (one line) for an unparsable formula, an unknown element,
    fractional counts, or more atoms than the model's ``max_atoms``."""
    from pymatgen.core import Composition

    try:
        comp = Composition(text)
    except Exception as err:  # noqa: BLE001 - pymatgen raises several kinds for bad input
        raise UsageError(f"--formula {text!r}: not a chemical formula ({' '.join(str(err).split())})") from err
    types = []
    for element, count in comp.items():
        z = getattr(element, "Z", None)
        if z is None or not 1 <= z <= MAX_ATOMIC_NUM:
            raise UsageError(f"--formula {text!r}: unknown element {element}")
        if abs(count - round(count)) > 1e-8 or round(count) < 1:
            raise UsageError(f"--formula {text!r}: {element} has a non-integer count {count:g}; give the "
                             f"cell's whole-number formula")
        types += [z] * int(round(count))
    if not types:
        raise UsageError(f"--formula {text!r}: no atoms")
    if len(types) > max_atoms:
        raise UsageError(f"--formula {text!r}: {len(types)} atoms, but this model decodes cells of at most "
                         f"{max_atoms} atoms")
    return torch.tensor(sorted(types), dtype=torch.long)


def write_candidates(crystals: CrystalModel, formulas: list[torch.Tensor], ids: list[str], out_dir, *,
                     samples: int = 1, batch_size: int = 500, seed: int = 0, overwrite: bool = False,
                     protocol: dict | None = None, merged: str = "candidates.extxyz", candidate_ids: str = "rank",
                     settings: dict | None = None, describe: dict | None = None, extra: dict | None = None) -> dict:
    """Write ``samples`` candidates for each formula (``ids[i]`` names formula i) into ``out_dir``, batch by
    batch (resumable like the reconstructions; batch k predicts whole formulas, ``batch_size // samples`` of
    them).

    ``candidate_ids``: ``rank`` names candidate j of formula i ``<ids[i]>_<j:03d>`` and writes CIFs;
    ``same`` repeats ``ids[i]`` for its candidates (the benchmark's form, paired with ``truth.extxyz``) and
    writes no CIFs. Candidates are ranked best first by the model's score (stored per frame as
    ``formula_nll`` with ``rank``). Further entries: ``settings`` of the settings a resumed run must match,
    ``describe`` of the manifest, ``extra`` of both (the formula, the split). Returns the summary also written as
    ``manifest.json``."""
    run = {"task": "csp", **(settings or {}), "samples": samples, "batch_size": batch_size, "seed": seed,
           "protocol": protocol, **crystals.record("csp"), "ids": list(ids),
           "formulas": [t.tolist() for t in formulas], **(extra or {})}
    batches = BatchRun.open(out_dir, run, device=model_device(crystals), overwrite=overwrite,
                            write_cifs=candidate_ids == "rank", cleared=("manifest.json", merged, "truth.extxyz"))
    writer = batches.writer
    per_batch = max(1, batch_size // samples)
    num_batches = -(-len(formulas) // per_batch)
    for k in batches.pending(num_batches, "CSP", items=len(formulas) * samples, unit="candidate"):
        chunk = slice(k * per_batch, (k + 1) * per_batch)
        decoded, nll = crystals.predict(formulas[chunk], samples, batches.generator(seed, k))
        names = [f"{i}_{j:03d}" if candidate_ids == "rank" else i for i in ids[chunk] for j in range(samples)]
        ranks = [j for _ in ids[chunk] for j in range(samples)]
        writer.write(k, decoded.to_structures(), names,
                     {"decoder_calls": decoded.decoder_calls, "formula_nll": nll.tolist()},
                     frame_info={"rank": ranks, "formula_nll": nll.tolist()})
    batches.barrier()
    summary = {"compositions": len(formulas), "samples": samples, **(describe or {}), "protocol": protocol,
               "seed": seed}
    record = {"settings_hash": writer.hash, "versions": library_versions(), **(extra or {})}
    if batches.first:
        count, finished = writer.merge(num_batches, merged)
        calls = sum(i.get("decoder_calls", 0) for i in writer.infos(finished))
        summary = {"count": count, **summary, "decoder_calls": calls, **record}
        write_json(writer.out / "manifest.json", summary)
    else:
        summary.update(record)
    batches.barrier()
    return summary


def run_csp(crystals: CrystalModel, formulas: list[torch.Tensor], ids: list[str], out_dir, *, samples: int = 1,
            extra_settings: dict | None = None, warnings: list[str] | None = None, **kw) -> dict:
    """:func:`write_candidates` with the model's own entries of the settings and the manifest
    (``run_entries("csp")``: a CDVAE's latent source and pool; a ``protocol`` entry is the record that
    :func:`write_candidates` keeps); ``warnings`` go into the manifest."""
    settings, describe = crystals.run_entries("csp")
    settings = dict(settings)
    protocol = settings.pop("protocol", None)
    return write_candidates(crystals, formulas, ids, out_dir, samples=samples, settings=settings,
                            describe={**describe, **({"warnings": warnings} if warnings else {})},
                            protocol=protocol, extra=extra_settings, **kw)


def csp_formula(crystals: CrystalModel, formula: str, out_dir, *, samples: int = 20, warning: str | None = None,
                **kw) -> dict:
    """Candidates for one formula: ``cif/<formula>_<rank>.cif`` and ``candidates.extxyz``, best first.
    ``warning`` (elements the model never saw, allowed by the user) goes into the manifest's ``warnings``."""
    types = parse_formula(formula, crystals.max_atoms)
    name = "".join(formula.split())
    return run_csp(crystals, [types], [name], out_dir, samples=samples, extra_settings={"formula": formula},
                   warnings=[warning] if warning else [], **kw)


def csp_split(crystals: CrystalModel, split: str, out_dir, *, num: int | None = None, samples: int = 1,
              **kw) -> dict:
    """The CSP benchmark on the first ``num`` crystals of ``split`` of the model's dataset: ``truth.extxyz``
    and ``predictions.extxyz`` with the same ids in the same order (``samples`` consecutive candidates per
    id, best ranked first), for ``genlowdim evaluate ... --mode reconstruction``. Only the compositions are
    given to the model."""
    from torch_geometric.data import Batch

    from genlowdim.crystal.decoded import batch_to_decoded
    from genlowdim.structures.io import write_extxyz

    items = crystals.load_split(split, num)
    ids = [item_id(d, split, i) for i, d in enumerate(items)]
    summary = run_csp(crystals, [d.atom_types for d in items], ids, out_dir, samples=samples,
                      merged="predictions.extxyz", candidate_ids="same",
                      extra_settings={"split": split, "dataset": crystals.dataset}, **kw)
    from pathlib import Path

    write_extxyz(batch_to_decoded(Batch.from_data_list(items)).to_structures(), Path(out_dir) / "truth.extxyz",
                 ids=ids)
    return summary
