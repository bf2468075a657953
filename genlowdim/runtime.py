"""Run-time plumbing shared by every family: atomic writes, JSON, checkpoints, versions, seeding, progress."""
from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, of another family, or of an incompatible format."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, family: str | None = None, map_location: Any = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; check its family when ``family`` is given."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means unusable
        raise CheckpointError(f"{path}: not a readable genlowdim checkpoint ({err})") from err
    if not isinstance(payload, dict) or "family" not in payload:
        raise CheckpointError(f"{path}: not a genlowdim checkpoint (no 'family' entry)")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format')} is not {CHECKPOINT_FORMAT}")
    if family is not None and payload["family"] != family:
        raise CheckpointError(
            f"{path}: checkpoint is of the {payload['family']!r} family, expected {family!r}")
    return payload


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """tqdm progress bar on stderr; silenced with GENLOWDIM_QUIET=1 or when ``disable=True``."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", os.environ.get("GENLOWDIM_QUIET") == "1")
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


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
