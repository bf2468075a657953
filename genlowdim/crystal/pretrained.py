"""Models that ship with the package: ``--model perov_5`` wherever ``--checkpoint`` is accepted.

Each shipped model is a folder ``genlowdim/crystal/pretrained/<name>/`` with

  ``cdvae.pt``       the CDVAE's EMA weights, config and scalers (a weights-only genlowdim checkpoint; a model of
                     another family ships its own file, listed under its kind)
  ``property.pt``    the separately trained property predictor (scores ``wdist_prop`` and optimisation)
  ``manifest.json``  sha256 of both files, the training configs and commands, optimiser steps, wall time,
                     the git commit they were trained at, and the metrics measured with them

:func:`export_model` writes such a folder from two training runs (only the weights a user needs are kept:
the EMA weights when the run kept them, no optimiser state). :func:`resolve_model` finds a shipped file
and checks its sha256 against the manifest before anything loads it.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Collection
from pathlib import Path

from genlowdim.runtime import CheckpointError, load_checkpoint, save_checkpoint, write_json

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
KINDS = {"cdvae": "cdvae.pt", "property": "property.pt"}


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def available_models(root: str | Path | None = None) -> dict[str, dict]:
    """Name -> manifest of every shipped model under ``root`` (None: :data:`PRETRAINED_DIR`)."""
    root = Path(root or PRETRAINED_DIR)
    found = {}
    for manifest in sorted(root.glob("*/manifest.json")):
        found[manifest.parent.name] = json.loads(manifest.read_text())
    return found


def resolve_model(name: str, kind: str | Collection[str] = "cdvae", root: str | Path | None = None) -> Path:
    """Path of a shipped model's ``kind`` file (``cdvae``, ``property``, or any kind its manifest lists),
    its sha256 checked. ``kind`` may be a collection of kinds (the model families the commands know): the one
    of them the manifest lists (:func:`model_kind_of`).

    Raises CheckpointError naming the known models when ``name`` is unknown, the file is missing or its
    content does not match the manifest."""
    models = available_models(root)
    if name not in models:
        known = ", ".join(sorted(models)) or "none"
        raise CheckpointError(f"--model {name!r}: no shipped model of that name (shipped: {known}); "
                              f"pass --checkpoint PATH for a model of your own")
    if not isinstance(kind, str):
        kind = model_kind_of(name, models[name], kind)
    entry = models[name]["files"].get(kind)
    if entry is None:
        raise CheckpointError(f"--model {name!r} ships no {kind} model")
    path = Path(root or PRETRAINED_DIR) / name / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"--model {name!r}: {path} is missing from the installation")
    if sha256_of(path) != entry["sha256"]:
        raise CheckpointError(f"--model {name!r}: {path} does not match its manifest's sha256 "
                              f"(a damaged or replaced file); reinstall the package")
    return path


def model_kind_of(name: str, manifest: dict, kinds: Collection[str]) -> str:
    """The kind of the model file of shipped model ``name`` (its ``manifest``): the one of ``kinds`` whose file
    the manifest lists. CheckpointError when it lists none of them or several."""
    listed = [kind for kind in manifest["files"] if kind in kinds]
    if len(listed) != 1:
        what = "no model file" if not listed else f"several model files ({', '.join(listed)})"
        files = ", ".join(sorted(manifest["files"])) or "none"
        raise CheckpointError(f"--model {name!r}: its manifest lists {what} of the known model kinds "
                              f"{', '.join(sorted(kinds))} (its files: {files})")
    return listed[0]


def checkpoint_path(checkpoint: str | None, model: str | None, kind: str | Collection[str] = "cdvae") -> Path:
    """The file behind ``--checkpoint PATH`` or ``--model NAME`` (exactly one of them); ``kind``: see
    :func:`resolve_model`."""
    if (checkpoint is None) == (model is None):
        raise CheckpointError("give exactly one of --checkpoint PATH and --model NAME "
                              f"(shipped: {', '.join(sorted(available_models())) or 'none'})")
    return Path(checkpoint) if checkpoint is not None else resolve_model(model, kind)


def slim_payload(payload: dict) -> dict:
    """A checkpoint reduced to what inference needs: family, config, extra state and one set of weights
    (the EMA weights when the run kept them). Training state (optimiser, generators) is dropped."""
    weights = payload.get("ema_state_dict") or payload["state_dict"]
    config = dict(payload["config"])
    if isinstance(config.get("data"), dict):   # a path on the training machine means nothing to a user: shipped
        config["data"] = {**config["data"], "data_dir": None}   # models read shipped or registered datasets
    keep = {"family": payload["family"], "config": config,
            "extra_state": payload.get("extra_state") or {},
            "state_dict": {k: v.detach().clone().float() if v.is_floating_point() else v.clone()
                           for k, v in weights.items()},
            "ema_state_dict": None,
            "train_state": payload.get("train_state"), "settings": payload.get("settings")}
    return keep


def _git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def export_model(name: str, cdvae_checkpoint: str | Path, property_checkpoint: str | Path | None = None, *,
                 commands: dict | None = None, git_commit: str | None = None, metrics: dict | None = None,
                 root: str | Path = PRETRAINED_DIR) -> dict:
    """Write ``root/name/`` from training runs' checkpoints; returns the manifest.

    ``commands``: the training commands (kind -> command line) to record; ``git_commit``: the commit the
    runs were trained at (default: this checkout's HEAD); ``metrics``: measured figures to record (they can
    be added later with :func:`record_metrics`; a re-export keeps the figures recorded before unless
    ``metrics`` is given)."""
    out = Path(root) / name
    if metrics is None and (out / "manifest.json").is_file():
        metrics = json.loads((out / "manifest.json").read_text()).get("metrics")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, source in (("cdvae", cdvae_checkpoint), ("property", property_checkpoint)):
        if source is None:
            continue
        payload = load_checkpoint(source, family="crystal")
        target = out / KINDS[kind]
        slim = slim_payload(payload)
        save_checkpoint(target, slim)
        state = payload.get("train_state") or {}
        files[kind] = {"file": target.name, "sha256": sha256_of(target), "bytes": target.stat().st_size,
                       "task": payload["config"].get("task"), "config": slim["config"],
                       "steps": state.get("step"), "epochs": state.get("epoch"),
                       "wall_seconds": state.get("elapsed_s"), "best_val": state.get("best_val"),
                       "command": (commands or {}).get(kind),
                       "weights": "ema" if payload.get("ema_state_dict") else "raw"}
    manifest = {"name": name, "files": files,
                "git_commit": git_commit or _git_commit(Path(__file__).resolve().parents[2]),
                "metrics": metrics or {}}
    write_json(out / "manifest.json", manifest)
    return manifest


def record_metrics(name: str, key: str, figures: dict, root: str | Path = PRETRAINED_DIR) -> dict:
    """Add or replace ``metrics[key]`` in a shipped model's manifest (the files' hashes are untouched)."""
    path = Path(root) / name / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.setdefault("metrics", {})[key] = figures
    write_json(path, manifest)
    return manifest
