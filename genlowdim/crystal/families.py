"""The crystal model families the commands know: a checkpoint's model kind (``extra_state["task"]``) -> the
function that builds its :class:`~genlowdim.crystal.contract.CrystalModel` from the checkpoint and the
command's arguments. A new family adds its line here (and its folder beside ``cdvae/``)."""
from __future__ import annotations

import argparse
from collections.abc import Callable

from genlowdim.errors import CheckpointError

__all__ = ["FAMILIES", "model_kind", "crystal_model"]


def _cdvae(payload: dict, args: argparse.Namespace):
    """A CDVAE checkpoint decoding with its config's sampling settings."""
    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.cdvae.contract import CDVAECrystals
    from genlowdim.runtime import resolve_device

    model, cfg = load_model(payload, resolve_device(args.device), use_ema=args.weights == "ema", task="cdvae")
    return CDVAECrystals(model, cfg.sampling)


FAMILIES: dict[str, Callable] = {
    "cdvae": _cdvae,
}


def model_kind(payload: dict) -> str:
    """The kind of crystal model a checkpoint holds (``cdvae``, ``property``, or a family's own)."""
    return (payload.get("extra_state") or {}).get("task") or (payload.get("config") or {}).get("task", "cdvae")


def crystal_model(payload: dict, args: argparse.Namespace, where: str):
    """The checkpoint's model as the tasks see it; CheckpointError for a kind no family generates."""
    kind = model_kind(payload)
    if kind not in FAMILIES:
        raise CheckpointError(f"{where}: holds a {kind!r} model; the crystal model families are "
                              f"{', '.join(sorted(FAMILIES))}")
    return FAMILIES[kind](payload, args)
