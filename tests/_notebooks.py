"""Run a notebook of notebooks/ in its quick mode and return the text it printed."""
from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_quick(name: str, timeout: int = 600) -> str:
    """Execute ``notebooks/<name>`` with GENLOWDIM_QUICK=1 (cwd = notebooks/); return all stream output."""
    env = {"GENLOWDIM_QUICK": "1", "GENLOWDIM_QUIET": "1", "OMP_NUM_THREADS": "1"}
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    with mock.patch.dict(os.environ, env):
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
