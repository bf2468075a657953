"""Structures written batch by batch into an output folder, resumable and never mixing two runs.

Layout of ``out``: ``cif/<id>.cif`` (optional), ``batches/batch_<k>/{samples.extxyz,done.json}`` and the
concatenation ``<merged name>.extxyz``. ``done.json`` is written last and marks batch k finished; it records
the run's settings and their hash. A rerun into the same folder resumes (skips finished batches) only when
its settings hash matches theirs; otherwise :class:`OutputConflictError` names the folder and the settings
that differ, unless ``overwrite=True`` clears what an earlier run left (batches, CIFs, merged files).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Sequence

from genlowdim.errors import UsageError
from genlowdim.runtime import atomic_write_text, write_json
from genlowdim.structures.io import write_cif, write_extxyz

__all__ = ["OutputConflictError", "BatchWriter", "settings_hash"]


class OutputConflictError(UsageError):
    """An output folder holds results of other settings (rerun elsewhere, or pass ``--overwrite``)."""


def settings_hash(settings: dict) -> str:
    """sha256 of the settings as canonical JSON (sorted keys; values must be JSON-ready)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


class BatchWriter:
    """Writes batch k's structures (``write``), tells which batches are finished (``done``) and merges them
    (``merge``). ``settings``: everything that decides the output (model digest, seed, sampler, counts ...);
    ``cleared``: further files of an earlier run that ``overwrite`` removes (e.g. ``manifest.json``)."""

    def __init__(self, out: str | Path, settings: dict, *, overwrite: bool = False, write_cifs: bool = True,
                 cleared: Sequence[str] = ("manifest.json",)):
        self.out = Path(out)
        self.settings = json.loads(json.dumps(settings, default=str))   # as it reads back from done.json
        self.hash = settings_hash(self.settings)
        self.write_cifs = write_cifs
        if overwrite:
            self._clear(cleared)
        else:
            self._check_resumable()
        self.out.mkdir(parents=True, exist_ok=True)

    def _batch_dir(self, k: int) -> Path:
        return self.out / "batches" / f"batch_{k:05d}"

    def _finished(self) -> list[Path]:
        return sorted((self.out / "batches").glob("batch_*/done.json"))

    def _clear(self, cleared: Sequence[str]) -> None:
        for name in ("batches", "cif"):
            shutil.rmtree(self.out / name, ignore_errors=True)
        for name in cleared:
            (self.out / name).unlink(missing_ok=True)

    def _check_resumable(self) -> None:
        for done in self._finished():
            info = json.loads(done.read_text())
            if info.get("settings_hash") == self.hash:
                continue
            old = info.get("settings") or {}
            diff = "; ".join(_differences(old, self.settings)) or "written by an older version without settings"
            raise OutputConflictError(
                f"--out {self.out} holds batches of another run ({diff}); use another --out, or --overwrite "
                f"to discard them")

    def done(self, k: int) -> bool:
        """Whether batch k was finished by a run with these settings."""
        return (self._batch_dir(k) / "done.json").is_file()

    def infos(self, batches: Sequence[int]) -> list[dict]:
        """The ``done.json`` records (ids, settings and the caller's ``info``) of the given finished batches."""
        return [json.loads((self._batch_dir(k) / "done.json").read_text()) for k in batches]

    def write(self, k: int, structures, ids: list[str], info: dict | None = None,
              frame_info: dict | None = None) -> None:
        """Batch k: CIFs (when ``write_cifs``), its extxyz (``frame_info``: key -> one value per structure,
        stored per frame), then ``done.json`` (last: marks it finished)."""
        bdir = self._batch_dir(k)
        if self.write_cifs:
            write_cif(structures, self.out / "cif", ids=ids)
        write_extxyz(structures, bdir / "samples.extxyz", ids=ids, info=frame_info)
        write_json(bdir / "done.json", {"ids": ids, "settings_hash": self.hash, "settings": self.settings,
                                        **(info or {})})

    def merge(self, num_batches: int, name: str = "samples.extxyz") -> tuple[int, list[int]]:
        """Concatenate the finished batches among the first ``num_batches`` into ``out/name`` (atomic).
        Returns (number of structures, indices of the finished batches)."""
        texts, count, finished = [], 0, []
        for k in range(num_batches):
            if self.done(k):
                texts.append((self._batch_dir(k) / "samples.extxyz").read_text())
                count += len(json.loads((self._batch_dir(k) / "done.json").read_text())["ids"])
                finished.append(k)
        atomic_write_text(self.out / name, "".join(texts))
        return count, finished
