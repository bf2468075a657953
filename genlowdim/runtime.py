"""Run-time plumbing shared by every family: atomic writes, JSON, checkpoints, versions, seeding, progress."""
from __future__ import annotations

import io
import json
import math
import os
import platform
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from genlowdim.errors import CheckpointError

__all__ = ["CheckpointError", "atomic_write_bytes", "atomic_write_text", "write_json", "library_versions",
           "save_checkpoint", "load_checkpoint", "payload_checksum", "progress", "cache_dir", "usable_cpus",
           "resolve_device"]

CHECKPOINT_FORMAT = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + rename, so readers never see half a file.

    The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it replaces,
    else 0666 less the umask (0644 under the usual umask 022), not the 0600 of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _new_file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)   # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.detach().cpu().tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """Replace NaN/inf with None so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(_finite(json.loads(json.dumps(obj, default=_json_default))), indent=2)
    atomic_write_text(path, text + "\n")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour can change a result."""
    from importlib import metadata

    out = {"python": platform.python_version(), "genlowdim": _own_version()}
    for name in ("torch", "torch-geometric", "e3nn", "numpy", "scipy", "pymatgen", "matminer",
                 "smact", "ase", "pot", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _own_version() -> str:
    from genlowdim import __version__

    return __version__


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Atomically save a checkpoint dict. ``payload`` must hold ``family`` and ``config``."""
    import torch

    for key in ("family", "config"):
        if key not in payload:
            raise ValueError(f"checkpoint payload lacks {key!r}")
    payload = dict(payload, format=CHECKPOINT_FORMAT, versions=library_versions())
    payload["checksum"] = payload_checksum(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, family: str | None = None, map_location: Any = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; check its family when ``family`` is given.

    Raises :class:`CheckpointError` with a one-line message naming the file for a missing, empty,
    truncated, foreign or corrupt file (contents that no longer match the checksum :func:`save_checkpoint`
    stored; a checkpoint written before checksums loads unchecked), and naming both families for a
    checkpoint of another family. The returned payload holds no ``checksum`` entry."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means unusable
        raise CheckpointError(f"{path}: not a readable genlowdim checkpoint ({_load_failure(path, err)})") \
            from err
    if not isinstance(payload, dict) or "family" not in payload:
        raise CheckpointError(f"{path}: not a genlowdim checkpoint (no 'family' entry)")
    stored = payload.pop("checksum", None)   # checkpoints written before checksums have none
    if stored is not None and stored != payload_checksum(payload):
        raise CheckpointError(f"{path}: corrupt checkpoint: its contents no longer match the checksum "
                              f"saved with it (the file was damaged or changed after it was written)")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format')} is not {CHECKPOINT_FORMAT}")
    if family is not None and payload["family"] != family:
        raise CheckpointError(
            f"{path}: checkpoint is of the {payload['family']!r} family, expected {family!r} "
            f"(give a checkpoint trained from a '{family}' config)")
    return payload


def payload_checksum(payload: dict) -> str:
    """sha256 over a checkpoint payload's contents (every tensor's dtype, shape and bytes, every other value's
    type and repr, in the payload's own order), computed on saving and checked on loading. A zip archive's
    own CRC is not checked by ``torch.load``, so overwritten bytes inside a tensor otherwise load silently."""
    import hashlib

    digest = hashlib.sha256()
    _feed_digest(digest, payload)
    return "sha256:" + digest.hexdigest()


def _feed_digest(digest, obj: Any) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{flat.dtype}{tuple(obj.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed_digest(digest, key)
            _feed_digest(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__}{len(obj)}".encode())
        for value in obj:
            _feed_digest(digest, value)
    else:
        digest.update(f"{type(obj).__name__}:{obj!r}\0".encode())


def _load_failure(path: Path, err: Exception) -> str:
    """Why ``torch.load`` failed, in a few words (PyTorch's own message is a paragraph about
    ``weights_only`` even when the file is merely cut short)."""
    import pickle
    import zipfile

    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            zip_start = fh.read(4) == b"PK\x03\x04"
        what = "a zip archive cut short" if zip_start else "not a PyTorch zip archive"
        return f"truncated or corrupt: {what}, {size} bytes"
    if isinstance(err, pickle.UnpicklingError):
        return "it holds Python objects other than tensors and plain containers, so genlowdim did not write it"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"truncated or corrupt: {first.split('. ')[0]}"


# on a log file or CI output: at most one update per this many seconds, at a fixed width
NON_TTY_MININTERVAL_S = 30.0


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """tqdm progress bar on stderr; silenced with GENLOWDIM_QUIET=1 or when ``disable=True``.

    On a terminal (or in a notebook) it updates live. Written to a file or a pipe, where each update
    becomes part of the log, it refreshes at most every :data:`NON_TTY_MININTERVAL_S` seconds at
    80 columns; its closing update still gives the total count, time and rate."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", os.environ.get("GENLOWDIM_QUIET") == "1")
    stream = kwargs.setdefault("file", sys.stderr)
    if _is_live(stream, tqdm):
        kwargs.setdefault("dynamic_ncols", True)
    else:
        kwargs.setdefault("mininterval", NON_TTY_MININTERVAL_S)
        kwargs.setdefault("maxinterval", max(NON_TTY_MININTERVAL_S, kwargs["mininterval"]))
        kwargs.setdefault("ncols", 80)
    return tqdm(iterable, **kwargs)


def _is_live(stream: Any, tqdm_class: type) -> bool:
    """A terminal or a notebook widget: places where an update replaces the previous one."""
    if any(c.__module__.startswith("tqdm.notebook") for c in tqdm_class.__mro__):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:   # a closed stream
        return False


def cache_dir() -> Path:
    """Where processed datasets and fingerprints are cached: ``$GENLOWDIM_CACHE_DIR`` or
    ``~/.cache/genlowdim``."""
    return Path(os.environ.get("GENLOWDIM_CACHE_DIR") or Path.home() / ".cache" / "genlowdim")


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity set where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_device(name: str | None = None):
    """``None``/'auto' -> CUDA when available else CPU."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
