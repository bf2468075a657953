"""``genlowdim relax``'s output folder: relaxed structures and one record per structure, resumable.

Layout of ``out`` (through :class:`genlowdim.structures.batches.BatchWriter`):
``batches/batch_<k>/{samples.extxyz,done.json}`` (``done.json`` holds batch k's per-structure records and
is written last), ``cif/<id>.cif``, and once every batch is finished ``relaxed.extxyz`` (all relaxed
structures, energies per atom in each frame), ``relax.json`` (settings, potential, summary, every record)
and ``relax.csv``. A rerun into the same folder with the same settings and input relaxes only the batches
not yet finished; other settings are refused (``--overwrite`` discards the earlier run).
"""
from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Sequence

from genlowdim.runtime import atomic_write_text, progress, write_json

__all__ = ["relax_to_folder", "read_records", "results_from_records", "CSV_COLUMNS"]

CSV_COLUMNS = ("index", "id", "formula", "num_atoms", "energy_per_atom_initial", "energy_per_atom_final",
               "rmsd_angstrom", "volume_change", "steps", "converged", "space_group_initial", "space_group_final",
               "error")


def _unique_names(ids: Sequence[str]) -> list[str]:
    """File-safe names: an id that repeats (several candidates per formula) gets ``__<index>``."""
    seen: dict[str, int] = {}
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
    return [i if seen[i] == 1 else f"{i}__{k}" for k, i in enumerate(ids)]


def _input_digest(ids: Sequence[str], structures: Sequence) -> str:
    """sha256 of the input (ids, species, cells, coordinates rounded to 1e-6), so a resume never mixes
    two inputs."""
    import hashlib

    digest = hashlib.sha256()
    for i, s in zip(ids, structures):
        digest.update(f"{i}|{s.lattice.matrix.round(6).tolist()}|{[sp.symbol for sp in s.species]}|"
                      f"{s.frac_coords.round(6).tolist()}\n".encode())
    return digest.hexdigest()


def _records(start: int, ids, structures, results) -> list[dict]:
    return [{"index": start + j, "id": ids[start + j], "formula": s.composition.reduced_formula,
             "num_atoms": len(s), **r.to_record()} for j, (s, r) in enumerate(zip(structures, results))]


def _write_batch(writer, k: int, start: int, ids, names, chunk, results) -> None:
    ok = [j for j, r in enumerate(results) if r.relaxed is not None]
    writer.write(k, [results[j].relaxed for j in ok], [names[start + j] for j in ok],
                 info={"records": _records(start, ids, chunk, results)},
                 frame_info={"energy_per_atom": [results[j].energy_final for j in ok],
                             "energy_per_atom_initial": [results[j].energy_initial for j in ok]})


def relax_to_folder(ids: Sequence[str], structures: Sequence, out: str | Path, settings=None, potential=None,
                    *, overwrite: bool = False, source: str = "") -> dict:
    """Relax ``structures`` into ``out`` batch by batch (``settings.batch_size`` per batch, each written
    when done) and return the run's summary record (also written to ``out/relax.json``). With
    ``settings.workers`` > 1 the batches still to do are shared by that many forked processes (one torch
    thread each), or, when fewer batches remain than workers, each batch is split among them."""
    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.relax import RelaxSettings, relax_structures
    from genlowdim.physics.workers import map_in_workers
    from genlowdim.structures.batches import BatchWriter

    settings, potential = settings or RelaxSettings(), potential or load_potential()
    record = {"settings": settings.to_dict(), "potential": potential.to_dict(), "source": source,
              "input_sha256": _input_digest(ids, structures), "num_structures": len(structures)}
    writer = BatchWriter(out, {**record, "batch_size": settings.batch_size}, overwrite=overwrite,
                         cleared=("relax.json", "relax.csv", "relaxed.extxyz"))
    names, size = _unique_names(list(ids)), settings.batch_size
    num_batches = -(-len(structures) // size)
    pending = [k for k in range(num_batches) if not writer.done(k)]
    workers = settings.workers
    inner = workers if len(pending) < workers else 1    # split a batch, or share out whole batches
    per_batch = dataclasses.replace(settings, workers=inner)

    def chunk(k: int) -> list:
        return list(structures[k * size:(k + 1) * size])

    bar = progress(total=len(structures), desc="relaxing", unit="crystal")
    bar.update(len(structures) - sum(len(chunk(k)) for k in pending))
    for k, results in map_in_workers(lambda k: relax_structures(chunk(k), per_batch, potential), pending,
                                     1 if inner > 1 else workers):
        _write_batch(writer, k, k * size, ids, names, chunk(k), results)
        bar.update(len(results))
    bar.close()
    writer.merge(num_batches, name="relaxed.extxyz")
    records = [r for info in writer.infos(range(num_batches)) for r in info["records"]]
    return _write_summary(Path(out), record, records)


def _write_summary(out: Path, record: dict, records: list[dict]) -> dict:
    from genlowdim.physics.stability import rmsd_summary

    failed = [{"index": r["index"], "id": r["id"], "error": r["error"]} for r in records if r["error"]]
    summary = {"num_relaxed": len(records) - len(failed), "num_failed": len(failed),
               "num_converged": sum(bool(r["converged"]) for r in records),
               "rmsd": rmsd_summary([r["rmsd_angstrom"] for r in records]), "failed": failed}
    report = {**record, "summary": summary, "records": records}
    write_json(out / "relax.json", report)
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    table.writeheader()
    table.writerows(records)
    atomic_write_text(out / "relax.csv", buffer.getvalue())
    return report


def read_records(out: str | Path) -> list[dict]:
    """The per-structure records of a finished ``genlowdim relax`` folder (from its ``relax.json``)."""
    import json

    path = Path(out) / "relax.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a finished relax folder (run genlowdim relax first)")
    return json.loads(path.read_text())["records"]


def results_from_records(records: list[dict]) -> list:
    """``RelaxResult``s (without structures) of a relax folder's records, in input order, for
    ``stability_block(..., results=...)`` without relaxing again."""
    from genlowdim.physics.relax import RelaxResult

    return [RelaxResult(energy_initial=r["energy_per_atom_initial"], energy_final=r["energy_per_atom_final"],
                        rmsd=r["rmsd_angstrom"], volume_change=r["volume_change"], steps=r["steps"],
                        converged=r["converged"], error=r["error"],
                        extra={k: r[k] for k in ("space_group_initial", "space_group_final") if k in r})
            for r in sorted(records, key=lambda r: r["index"])]
