"""Execute notebooks/singular_likelihood.ipynb in quick mode (GENLOWDIM_QUICK=1)."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "singular_likelihood.ipynb"


def test_notebook_runs_in_quick_mode(monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUICK", "1")
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "quick mode" in text and "diffusion" in text
