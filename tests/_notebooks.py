"""Run a notebook of notebooks/ in its quick mode; return what it printed and how many images it displayed."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


class NotebookRun(NamedTuple):
    text: str      # all stream output, in order
    images: int    # image/png outputs (figures the notebook displays when opened in Jupyter)

    def checks(self) -> dict[str, float]:
        """Numbers printed as ``check NAME estimate=VALUE``."""
        return {m[1]: float(m[2]) for m in re.finditer(r"check (\w+) estimate=(-?\d+\.\d+)", self.text)}


def run_quick(name: str, timeout: int = 600) -> NotebookRun:
    """Execute ``notebooks/<name>`` with GENLOWDIM_QUICK=1 (cwd = notebooks/; the kernel inherits this
    process's environment, PYTHONPATH included)."""
    env = {"GENLOWDIM_QUICK": "1", "GENLOWDIM_QUIET": "1", "OMP_NUM_THREADS": "1"}
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    with mock.patch.dict(os.environ, env):
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return NotebookRun("".join(o.get("text", "") for o in outputs),
                       sum("image/png" in o.get("data", {}) for o in outputs))
