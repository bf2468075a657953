"""Run a notebook of notebooks/ in its quick mode; return what it printed and how many images it displayed.

The notebooks are committed with the outputs of that same quick run, so that a reader on the web sees the
figures. ``python tests/_notebooks.py [NAME.ipynb ...]`` (``make notebooks``) re-executes them and stores the
outputs in place, with the hash of the code cells in the notebook's metadata; the tests check that the stored
outputs belong to the current code and agree with a fresh run.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
QUICK_ENV = {"GENLOWDIM_QUICK": "1", "GENLOWDIM_QUIET": "1", "OMP_NUM_THREADS": "1"}
STORED_MODE = "quick mode (GENLOWDIM_QUICK=1), one thread"


class NotebookRun(NamedTuple):
    text: str      # all stream output, in order
    images: int    # image/png outputs (figures the notebook displays when opened in Jupyter)

    def checks(self) -> dict[str, float]:
        """Numbers printed as ``check NAME estimate=VALUE``."""
        return {m[1]: float(m[2]) for m in re.finditer(r"check (\w+) estimate=(-?\d+\.\d+)", self.text)}


def code_sha256(nb) -> str:
    """sha256 of the notebook's code cells, in order: what the stored outputs were computed from."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode() + b"\0")
    return h.hexdigest()


def outputs_of(nb) -> NotebookRun:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return NotebookRun("".join(o.get("text", "") for o in outputs),
                       sum("image/png" in o.get("data", {}) for o in outputs))


def execute_quick(name: str, timeout: int = 600):
    """Execute ``notebooks/<name>`` with GENLOWDIM_QUICK=1 (cwd = notebooks/; the kernel inherits this
    process's environment, PYTHONPATH included); returns the executed notebook."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    with mock.patch.dict(os.environ, QUICK_ENV):
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def run_quick(name: str, timeout: int = 600) -> NotebookRun:
    """What ``notebooks/<name>`` prints and displays in its quick mode."""
    return outputs_of(execute_quick(name, timeout))


def stored_run(name: str) -> NotebookRun:
    """The outputs committed with ``notebooks/<name>`` (nothing executed)."""
    return outputs_of(nbformat.read(NOTEBOOKS / name, as_version=4))


def assert_agrees_with_stored(name: str, run: NotebookRun, rel: float = 0.1) -> None:
    """A fresh quick run shows as many figures as the committed outputs and prints the same checks, equal
    within ``rel`` (seeded runs; the tolerance absorbs other BLAS builds)."""
    import pytest

    stored = stored_run(name)
    assert run.images == stored.images, f"{name}: {run.images} figures now, {stored.images} stored"
    assert run.checks().keys() == stored.checks().keys()
    for key, value in run.checks().items():
        assert value == pytest.approx(stored.checks()[key], rel=rel, abs=1e-3), f"{name}: check {key}"


def store(name: str, timeout: int = 600) -> Path:
    """Execute ``notebooks/<name>`` in its quick mode and write it back with its outputs; kernel and
    language metadata kept, the code hash and the mode recorded under ``metadata.genlowdim``."""
    nb = execute_quick(name, timeout)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["genlowdim"] = {"outputs": STORED_MODE, "code_sha256": code_sha256(nb)}
    path = NOTEBOOKS / name
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    for arg in sys.argv[1:] or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")):
        print("stored", store(Path(arg).name), flush=True)
