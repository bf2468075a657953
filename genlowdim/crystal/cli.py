"""Command-line handlers of the crystal family (filled in by its implementation)."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this family's own command groups."""
    from genlowdim.crystal import data_cli

    data_cli.register(subparsers)


def train(args: argparse.Namespace) -> int:
    raise NotImplementedError("training of the crystal family is not implemented yet")


def sample(args: argparse.Namespace, checkpoint: dict) -> int:
    raise NotImplementedError("sampling of the crystal family is not implemented yet")
