"""Command-line handlers of the metrics package (``genlowdim evaluate``)."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
