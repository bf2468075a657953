"""What continuing a run (``train --resume``) checks before any data is read or any model is built: that the
run's ``last.pt`` is intact (else which earlier checkpoint is) and that the config asks for the same run; and
the record a finished result keeps of its settings, which a rerun checks before reusing it
(:func:`settings_record`, :func:`check_resumable`)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from genlowdim.config import ConfigError
from genlowdim.errors import CheckpointError
from genlowdim.runtime import load_checkpoint

__all__ = ["MAY_CHANGE_ON_RESUME", "check_resume", "load_for_resume", "check_same_run", "config_differences",
           "settings_record", "check_resumable"]

# what may differ when a run is continued: its budget and bookkeeping (dotted keys, or whole sections);
# everything else (model, data, optimiser, seed) decides the weights in the checkpoint and must match
MAY_CHANGE_ON_RESUME = ("name", "train.epochs", "train.max_steps", "train.max_minutes", "train.checkpoint_every",
                        "train.log_every", "train.val_every", "train.max_bad_steps", "train.keep_every",
                        "train.compile_kernels", "sampling")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"a.b.c": value} (dotted keys)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    """``"key: old -> new"`` for each dotted key set in both configs whose values differ and which may not
    change on resume (a key only one of them has is a setting added or removed since: not compared)."""
    flat_old, flat_new = flatten(old), flatten(new)
    free = lambda key: any(key == k or key.startswith(k + ".") for k in MAY_CHANGE_ON_RESUME)   # noqa: E731
    return [f"{key}: {flat_old[key]!r} -> {flat_new[key]!r}" for key in sorted(set(flat_old) & set(flat_new))
            if flat_old[key] != flat_new[key] and not free(key)]


def check_same_run(last: Path, stored: dict, config: dict) -> None:
    """ConfigError naming every setting of ``config`` that differs from the run's ``stored`` config."""
    diff = config_differences(stored, config)
    if diff:
        raise ConfigError(f"--resume: {last} was written with other settings ({'; '.join(diff)}); only the "
                          f"budget ({', '.join(MAY_CHANGE_ON_RESUME[1:-1])}) may change when a run is "
                          f"continued: drop those --set, or train into another --out")


def load_for_resume(last: Path, family: str | None = None, map_location: Any = "cpu") -> dict:
    """``last``'s payload; a CheckpointError for a damaged one also says which earlier checkpoint of the run
    (``best.pt`` first) is intact and how to continue from it."""
    try:
        return load_checkpoint(last, family=family, map_location=map_location)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; {_fallback(Path(last), family)}") from None


def _fallback(last: Path, family: str | None) -> str:
    for other in sorted(last.parent.glob("*.pt"), key=lambda p: (p.name != "best.pt", p.name)):
        if other == last:
            continue
        try:
            payload = load_checkpoint(other, family=family)
        except CheckpointError:
            continue
        step = (payload.get("train_state") or {}).get("step")
        at = f" (step {step})" if step is not None else ""
        return f"{other} is intact{at}: copy it to {last} and rerun with --resume to continue from it"
    return f"no other checkpoint in {last.parent} is intact: start again in another --out"


def check_resume(out_dir: str | Path, config: dict, family: str | None = None) -> dict | None:
    """The payload of ``out_dir/last.pt`` after both checks, or None when the folder holds no run yet."""
    last = Path(out_dir) / "last.pt"
    if not last.exists():
        return None
    payload = load_for_resume(last, family)
    check_same_run(last, payload.get("config") or {}, config)
    return payload


def settings_record(settings: dict) -> dict:
    """``{"settings": ..., "settings_hash": ...}`` to store beside a finished result (JSON-normalised)."""
    normal = json.loads(json.dumps(settings, sort_keys=True))
    digest = hashlib.sha256(json.dumps(normal, sort_keys=True).encode()).hexdigest()[:16]
    return {"settings": normal, "settings_hash": digest}


def check_resumable(where: str | Path, name: str, stored: dict, settings: dict) -> None:
    """Raise ``ConfigError`` unless the finished result ``stored`` (holding :func:`settings_record`'s keys)
    was computed with ``settings``; the one-line message names ``where``, ``name`` and what differs."""
    current = settings_record(settings)
    if stored.get("settings_hash") == current["settings_hash"]:
        return
    old, new = flatten(stored.get("settings") or {}), flatten(current["settings"])
    diff = [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in sorted(set(old) | set(new))
            if old.get(k, "(unset)") != new.get(k, "(unset)")]
    what = "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "") if old else "no settings recorded"
    raise ConfigError(f"{where}: finished {name} was computed with other settings ({what}); pass "
                      f"--overwrite to clear the old results, or choose another output directory")
