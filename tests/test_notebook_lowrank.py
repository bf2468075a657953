"""Execute notebooks/subspace_clustering.ipynb end to end in its quick mode (GENLOWDIM_QUICK=1)."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "subspace_clustering.ipynb"


def test_notebook_runs_in_quick_mode(monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUICK", "1")
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "quick mode: True" in outputs
    # the spectral solver and the trained denoiser recover the subspaces; random-start Adam is reported
    assert "spectral      error 0.000" in outputs
    assert "spectral: success rate" in outputs
