"""Structures written batch by batch into an output folder, resumable and never mixing two runs.

Layout of ``out``: ``cif/<id>.cif`` (optional), ``batches/batch_<k>/{samples.extxyz,done.json}`` and the
concatenation ``<merged name>.extxyz``. ``done.json`` is written last and marks batch k finished; it records
the run's settings and their hash. A rerun into the same folder resumes (skips finished batches) only when
its settings hash matches theirs; otherwise :class:`OutputConflictError` names the folder and the settings
that differ, unless ``overwrite=True`` clears what an earlier run left (batches, CIFs, merged files).

A folder in use is locked: the writer holds ``out/.genlowdim.lock`` (the pid and host of its process) from
the moment it is made until it is garbage-collected or the process ends, and a second run into the same
folder stops with :class:`OutputInUseError` instead of mixing its batches with the first one's. The lock
of a process that died without removing it (killed, or the machine went down) is taken over. Under
``torchrun`` the first process (``RANK`` 0) holds it for them all.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import weakref
from pathlib import Path
from typing import Sequence

from genlowdim.errors import UsageError
from genlowdim.runtime import atomic_write_text, write_json
from genlowdim.structures.io import write_cif, write_extxyz

__all__ = ["OutputConflictError", "OutputInUseError", "BatchWriter", "settings_hash", "LOCK_NAME"]

LOCK_NAME = ".genlowdim.lock"


class OutputConflictError(UsageError):
    """An output folder holds results of other settings (rerun elsewhere, or pass ``--overwrite``)."""


class OutputInUseError(UsageError):
    """Another running process writes into this output folder (wait for it, or choose another ``--out``)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


def _holder(lock: Path) -> dict | None:
    """The lock's record, or None when it is gone or was left by a dead process of this host."""
    try:
        info = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        info = {}
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int):
        # a lock of this very process is an earlier writer's that is done with the folder (runs in one
        # process follow each other)
        return info if pid != os.getpid() and _alive(pid) else None
    return info   # another machine's (or unreadable) lock: its process cannot be checked from here


def _take_lock(out: Path, token: str) -> Path:
    """Create ``out/LOCK_NAME`` for this process (taking over a stale one); OutputInUseError if held."""
    lock = out / LOCK_NAME
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "token": token})
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if holder is not None:
                who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
                raise OutputInUseError(f"--out {out} is in use by another run ({who}); wait for it to finish or "
                                       f"choose another --out (if that run is gone, delete {lock})") from None
            _remove_stale(lock)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(record)
        return lock
    raise OutputInUseError(f"--out {out}: could not take its lock {lock}; another run may be starting there")


def _remove_stale(lock: Path) -> None:
    # renamed first, so that of two processes taking over the same stale lock only one removes it
    stale = lock.with_name(f"{lock.name}.stale.{os.getpid()}")
    try:
        os.replace(lock, stale)
        stale.unlink()
    except FileNotFoundError:
        pass


def _release_lock(lock: Path, token: str) -> None:
    try:   # only our own: a later writer of this process may have taken the folder over
        if json.loads(lock.read_text()).get("token") == token:
            lock.unlink()
    except (OSError, ValueError):
        pass


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
        self.out.mkdir(parents=True, exist_ok=True)
        if int(os.environ.get("RANK", "0")) == 0:   # taken before anything is cleared or checked
            token = f"{os.getpid()}-{id(self)}-{time.time_ns()}"
            lock = _take_lock(self.out, token)
            self._unlock = weakref.finalize(self, _release_lock, lock, token)
        try:
            if overwrite:
                self._clear(cleared)
            else:
                self._check_resumable()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the folder's lock now (otherwise when the writer is collected or the process ends)."""
        unlock = getattr(self, "_unlock", None)
        if unlock is not None:
            unlock()

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
