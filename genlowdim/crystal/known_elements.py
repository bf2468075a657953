"""The elements a crystal model saw in training, and the check that keeps a task from extrapolating silently.

A model decodes only what its composition head learnt: asked for a formula with an element that never
occurs in its training crystals, it still returns candidates, with cells and bond lengths that mean nothing.
Where a model's training elements are recorded, first found wins:

1. the checkpoint's ``extra_state["elements"]`` (written by ``genlowdim train`` since it was added);
2. ``elements`` of the shipped model's ``manifest.json`` beside the checkpoint;
3. the atomic numbers of the training split its config names (``data.dataset``, ``data.train_limit``),
   read once and cached under :func:`~genlowdim.runtime.cache_dir`; for a model without such a config, the
   training split its ``load_split`` reads (:mod:`genlowdim.crystal.contract`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from genlowdim.errors import UsageError

__all__ = ["training_elements", "unseen_elements", "check_known_elements", "symbols"]


def symbols(numbers) -> list[str]:
    """Element symbols of atomic numbers, in the given order."""
    from pymatgen.core import Element

    return [Element.from_Z(int(z)).symbol for z in numbers]


def training_elements(payload: dict, cfg, checkpoint: str | Path | None = None, model=None) -> list[int]:
    """Sorted atomic numbers of the model's training crystals (see the module docstring for the sources;
    ``cfg``: the checkpoint's config, or None and ``model`` a model of the contract)."""
    recorded = (payload.get("extra_state") or {}).get("elements")
    if recorded:
        return sorted(int(z) for z in recorded)
    if checkpoint is not None:
        manifest = Path(checkpoint).parent / "manifest.json"
        if manifest.is_file():
            listed = json.loads(manifest.read_text()).get("elements")
            if listed:
                return sorted(int(z) for z in listed)
    if cfg is None:
        from genlowdim.crystal.cdvae.training import seen_elements

        return seen_elements(model.load_split("train", None))
    return _cached_split_elements(cfg)


def _cached_split_elements(cfg) -> list[int]:
    from genlowdim.runtime import cache_dir, write_json

    key = json.dumps([cfg.data.dataset, getattr(cfg.data, "data_dir", None), cfg.data.train_limit,
                      cfg.data.niggli, cfg.data.max_atoms], default=str)
    path = cache_dir() / "elements" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())["elements"]
    from genlowdim.crystal.cdvae.training import load_split, seen_elements

    found = seen_elements(load_split(cfg, "train", cfg.data.train_limit))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"key": key, "elements": found})
    return found


def unseen_elements(types, known) -> list[int]:
    """Atomic numbers among ``types`` (any iterable of ints) that are not in ``known``, sorted, once each."""
    known = set(int(z) for z in known)
    return sorted({int(z) for z in types} - known)


def check_known_elements(types, known, what: str, *, allow: bool = False) -> str | None:
    """None when every element of ``types`` is in ``known``. Otherwise UsageError naming the unseen
    elements (``what`` says whose: ``--formula 'NaCl'``), or with ``allow`` the warning line to print and
    write into the outputs."""
    unseen = unseen_elements(types, known)
    if not unseen:
        return None
    names = f"element{'s' if len(unseen) > 1 else ''} {', '.join(symbols(unseen))}"
    if not allow:
        raise UsageError(f"{what}: {names} never seen in this model's training crystals, so its structures "
                         f"would be extrapolation; pass --allow-unseen-elements to proceed anyway")
    return (f"{what}: {names} never seen in this model's training crystals; these structures are "
            f"extrapolation (--allow-unseen-elements)")
