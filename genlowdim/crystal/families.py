"""The crystal model families the commands know: a checkpoint's model kind (``extra_state["task"]``) -> the
function that builds its :class:`~genlowdim.crystal.contract.CrystalModel` from the checkpoint and the
command's arguments. A new family adds its line here (and its folder beside ``cdvae/``)."""
from __future__ import annotations

import argparse
from collections.abc import Callable

from genlowdim.errors import CheckpointError

__all__ = ["FAMILIES", "model_kind", "crystal_model"]


def _cdvae(payload: dict, args: argparse.Namespace):
    """A CDVAE checkpoint, decoding with its config's sampling settings or with the protocol the command's
    flags resolve to (:mod:`genlowdim.crystal.cdvae.from_args`)."""
    from genlowdim.crystal.cdvae.from_args import cdvae_crystals

    return cdvae_crystals(payload, args)


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
