"""Reference data shipped with the package: what an evaluation computes for each reference crystal (the
CrystalNN and Magpie fingerprints, the density and the number of elements) for perov_5's whole test split, so
that ``genlowdim evaluate --reference perov_5:test`` and ``genlowdim demo`` compare against all 3,785 crystals
without computing any of it.

A shipped set serves only the structures it was made from. Its manifest (``data/reference/manifest.json``)
holds the content key of those structures (:func:`genlowdim.metrics.fingerprints.content_key`: every
lattice, species and coordinate in order, the fingerprint settings and the pymatgen and matminer versions)
and the sha256 of its file. When a set is named like a shipped one but its structures or the library
versions differ, or the file's bytes changed, the reason is printed on stderr and everything is computed as
for any other set (and cached on disk); the shipped values are never used then.

Values are stored as computed (float64, compressed), so an evaluation with them equals one without them.
Regenerate after a change to the dataset, pymatgen or matminer::

    python -m genlowdim.metrics.reference_data perov_5:test
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from genlowdim.metrics.fingerprints import Fingerprints, cached_fingerprints, compute_fingerprints, content_key

DATA_DIR = Path(__file__).parent / "data" / "reference"
METHOD = "fast"           # the fingerprint implementation the shipped values come from
REGENERATE = "python -m genlowdim.metrics.reference_data {name}"


class ReferenceData(NamedTuple):
    """One reference set's per-crystal values: fingerprints, ``info`` (where they came from) and
    ``quantities`` (``density`` in g/cm³ and ``num_elems``, each (N,))."""

    fingerprints: Fingerprints
    info: dict
    quantities: dict


def _key(structures: Sequence) -> str:
    return content_key(structures, extra=f"shipped reference|{METHOD}")


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def read_manifest(directory: str | Path | None = None) -> dict:
    path = Path(DATA_DIR if directory is None else directory) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_shipped(structures: Sequence, name: str | None, method: str = METHOD,
                 directory: str | Path | None = None) -> ReferenceData | None:
    """The shipped values of ``structures`` when ``name`` (e.g. ``"perov_5:test"``) is a shipped set made
    from exactly these structures with this installation's libraries; else None, with the reason on stderr
    when the name is a shipped one. ``directory``: where the shipped sets are (default: the package's)."""
    directory = DATA_DIR if directory is None else directory
    entry = read_manifest(directory).get(name) if name else None
    if entry is None or method != entry["method"]:
        return None
    problem = _mismatch(structures, entry)
    path = Path(directory) / entry["file"]
    data = path.read_bytes() if problem is None and path.is_file() else None
    if problem is None and (data is None or _sha256(data) != entry["sha256"]):
        problem = f"{path} is missing or its bytes changed (sha256 differs from the manifest's)"
    if problem is not None:
        print(f"genlowdim: shipped reference data of {name} not used: {problem}; computing it instead "
              f"(to refresh the shipped file: {REGENERATE.format(name=name)})", file=sys.stderr, flush=True)
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        fps = Fingerprints(arrays["struct"], arrays["comp_raw"], [str(e) for e in arrays["errors"]],
                           json.loads(str(arrays["info"])))
        quantities = {"density": arrays["density"], "num_elems": arrays["num_elems"]}
    info = {"cache_file": str(path), "cache_hit": True, "shipped": name, "sha256": entry["sha256"]}
    return ReferenceData(fps, info, quantities)


def _mismatch(structures: Sequence, entry: dict) -> str | None:
    """Why the shipped entry does not describe ``structures`` (None when it does)."""
    from genlowdim.metrics.result import versions

    if len(structures) != entry["count"]:
        return f"it holds {entry['count']:,} crystals, given {len(structures):,}"
    if _key(structures) == entry["content_key"]:
        return None
    here = {k: versions().get(k) for k in entry["versions"]}
    if here != entry["versions"]:
        return f"made with {entry['versions']}, this installation has {here}"
    return "the structures differ from those it was made from"


def reference_data(structures: Sequence, name: str | None, cache_dir=None, *, method: str = METHOD,
                   workers: int | None = None, show_progress: bool = True,
                   shipped_dir: str | Path | None = None) -> ReferenceData:
    """The reference set's values: shipped when :func:`load_shipped` has them, else computed (fingerprints
    through the on-disk cache of :func:`~genlowdim.metrics.fingerprints.cached_fingerprints`)."""
    shipped = load_shipped(structures, name, method, shipped_dir)
    if shipped is not None:
        return shipped
    from genlowdim.metrics.properties import crystal_quantities

    fps, info = cached_fingerprints(structures, name, cache_dir, workers=workers, show_progress=show_progress,
                                    desc="reference fingerprints", method=method)
    return ReferenceData(fps, info, crystal_quantities(structures))


def write_shipped(name: str, structures: Sequence, directory: str | Path | None = None,
                  workers: int | None = None) -> dict:
    """Compute ``structures``' values, write them as ``<name>.npz`` under ``directory`` and record them in
    its manifest; returns the manifest entry."""
    from genlowdim.metrics.properties import crystal_quantities
    from genlowdim.metrics.result import versions
    from genlowdim.runtime import atomic_write_bytes, write_json

    fps = compute_fingerprints(structures, workers=workers, method=METHOD, desc=f"{name} fingerprints")
    quantities = crystal_quantities(structures)
    buf = io.BytesIO()
    np.savez_compressed(buf, struct=fps.struct, comp_raw=fps.comp_raw, errors=np.array(fps.errors, dtype=str),
                        info=np.array(json.dumps(fps.info)), **quantities)
    directory = Path(DATA_DIR if directory is None else directory)
    file = name.replace(":", "_") + ".npz"
    atomic_write_bytes(directory / file, buf.getvalue())
    entry = {"file": file, "sha256": _sha256(buf.getvalue()), "count": len(structures), "method": METHOD,
             "content_key": _key(structures),
             "versions": {k: versions().get(k) for k in ("pymatgen", "matminer")},
             "regenerate": REGENERATE.format(name=name)}
    write_json(directory / "manifest.json", {**read_manifest(directory), name: entry})
    return entry


def main(argv: list[str] | None = None) -> int:
    from genlowdim.structures.datasets import load_structures

    parser = argparse.ArgumentParser(prog="python -m genlowdim.metrics.reference_data",
                                     description="(maintainers) write the shipped reference data of a split")
    parser.add_argument("name", help="dataset split, e.g. perov_5:test")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--dir", default=str(DATA_DIR), help="where to write (default: the package's)")
    args = parser.parse_args(argv)
    entry = write_shipped(args.name, load_structures(args.name)[1], args.dir, args.workers)
    print(f"wrote {Path(args.dir) / entry['file']} ({entry['count']:,} crystals, sha256 {entry['sha256']})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
