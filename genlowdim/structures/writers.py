"""Structure output: P1 CIFs (one file each, or multi-block), extxyz via ASE and genlowdim JSON, all written
atomically (``.gz`` when the name says so). :mod:`genlowdim.structures.io` reads all three back."""
from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path
from typing import Any, Sequence

from pymatgen.core import Structure

from genlowdim.runtime import atomic_write_bytes

__all__ = ["JSON_FORMAT", "write_cif", "write_extxyz", "write_json"]

JSON_FORMAT = "genlowdim.structures"


def _write(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.name.lower().endswith(".gz") else data)


def _ids(structures: Sequence[Structure], ids: Sequence[str] | None) -> list[str]:
    if ids is None:
        return [f"structure_{k}" for k in range(len(structures))]
    if len(ids) != len(structures):
        raise ValueError(f"got {len(ids)} ids for {len(structures)} structures")
    return [str(i) for i in ids]


def _cif_text(structure: Structure, name: str) -> str:
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(structure))
    # the block name becomes the id on reading; keep it free of whitespace
    block = "data_" + re.sub(r"\s+", "_", name)
    return re.sub(r"^data_.*$", lambda _: block, text, count=1, flags=re.MULTILINE)


def write_cif(structures: Sequence[Structure], path: str | Path, ids: Sequence[str] | None = None,
              multiblock: bool = False) -> list[Path]:
    """Write P1 CIFs: one file ``<path>/<id>.cif`` per structure, or one multi-block file at ``path``
    (block names = ids). Returns the written paths."""
    path, names = Path(path), _ids(structures, ids)
    if multiblock:
        _write(path, "".join(_cif_text(s, n) for s, n in zip(structures, names)))
        return [path]
    path.mkdir(parents=True, exist_ok=True)
    out = [path / f"{re.sub(r'[^A-Za-z0-9_.+-]', '_', name)}.cif" for name in names]
    for structure, name, target in zip(structures, names, out):
        _write(target, _cif_text(structure, name))
    return out


def write_extxyz(structures: Sequence[Structure], path: str | Path, ids: Sequence[str] | None = None,
                 info: dict[str, Sequence[Any]] | None = None) -> Path:
    """Write an extxyz file via ASE; ``info`` maps a key to one value per structure (stored per frame,
    read back as properties when numeric); the id is stored as ``material_id``."""
    import ase.io   # only extxyz needs ASE, whose import takes ~0.5 s
    from pymatgen.io.ase import AseAtomsAdaptor

    path, names, info = Path(path), _ids(structures, ids), dict(info or {})
    for key, values in info.items():
        if len(values) != len(structures):
            raise ValueError(f"info[{key!r}] has {len(values)} values for {len(structures)} structures")
    frames = [AseAtomsAdaptor.get_atoms(s) for s in structures]
    for k, (atoms, name) in enumerate(zip(frames, names)):
        atoms.info = {"material_id": name, **{key: values[k] for key, values in info.items()}}
    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    _write(path, buffer.getvalue())
    return path


def write_json(structures: Sequence[Structure], path: str | Path, ids: Sequence[str] | None = None,
               properties: Sequence[dict] | None = None) -> Path:
    """Write structures (pymatgen ``as_dict``) with ids and optional per-structure property dicts."""
    path, names = Path(path), _ids(structures, ids)
    if properties is not None and len(properties) != len(structures):
        raise ValueError(f"got {len(properties)} property dicts for {len(structures)} structures")
    items = [{"material_id": n, "structure": s.as_dict(),
              "properties": dict(properties[k]) if properties is not None else {}}
             for k, (s, n) in enumerate(zip(structures, names))]
    _write(path, json.dumps({"format": JSON_FORMAT, "version": 1, "structures": items}))
    return path
