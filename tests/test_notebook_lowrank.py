"""Execute notebooks/subspace_clustering.ipynb end to end in its quick mode (GENLOWDIM_QUICK=1)."""
from _notebooks import run_quick


def test_notebook_runs_in_quick_mode():
    outputs = run_quick("subspace_clustering.ipynb", timeout=300)
    assert "quick mode: True" in outputs
    # the spectral solver and the trained denoiser recover the subspaces; random-start Adam is reported
    assert "spectral      error 0.000" in outputs
    assert "spectral: success rate" in outputs
